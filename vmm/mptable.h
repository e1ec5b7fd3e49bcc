/* mptable.h: the Intel MultiProcessor table that tells the guest its CPUs and IOAPIC. No KVM here. */
#ifndef KILN_MPTABLE_H
#define KILN_MPTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "gmem.h"
#include "util.h"

#define MPTABLE_MAX_CPUS   32
#define MPTABLE_IOAPIC_PINS 24
#define IOAPIC_ADDR        0xfec00000u
#define LAPIC_ADDR         0xfee00000u

/* Bytes the table takes for ncpus CPUs (floating pointer included). */
size_t mptable_size(unsigned int ncpus);

/*
 * Build the floating pointer and configuration table for ncpus (1..MPTABLE_MAX_CPUS)
 * into buf[len]; the table will live at guest address gpa. CPU i has APIC id i;
 * the IOAPIC has id ncpus; ISA IRQ i goes to IOAPIC pin i; LINT0 ExtINT, LINT1 NMI.
 * Returns the number of bytes written, or -EINVAL / -ENOSPC.
 */
int mptable_build(uint8_t *buf, size_t len, uint32_t gpa, unsigned int ncpus) KILN_WUR;

/* Byte sum of buf[len] modulo 256 (0 for a valid MP structure). */
uint8_t mptable_sum(const uint8_t *buf, size_t len);

#endif
