/* mptable.c: the Intel MultiProcessor Specification 1.4 table for the guest's CPUs and IOAPIC. */
#include "mptable.h"

#include <errno.h>
#include <string.h>

#define MPF_SIZE   16
#define MPC_HDR    44
#define MPC_CPU    20
#define MPC_BUS    8
#define MPC_IOAPIC 8
#define MPC_INTSRC 8
#define MPC_LINTSRC 8

size_t mptable_size(unsigned int ncpus)
{
	return MPF_SIZE + MPC_HDR + ncpus * MPC_CPU + MPC_BUS + MPC_IOAPIC +
	       MPTABLE_IOAPIC_PINS * MPC_INTSRC + 2 * MPC_LINTSRC;
}

uint8_t mptable_sum(const uint8_t *buf, size_t len)
{
	uint8_t s = 0;
	for (size_t i = 0; i < len; i++)
		s = (uint8_t)(s + buf[i]);
	return s;
}

int mptable_build(uint8_t *buf, size_t len, uint32_t gpa, unsigned int ncpus)
{
	if (ncpus < 1 || ncpus > MPTABLE_MAX_CPUS)
		return -EINVAL;
	size_t total = mptable_size(ncpus);
	if (len < total)
		return -ENOSPC;
	memset(buf, 0, total);

	uint8_t *mpf = buf, *mpc = buf + MPF_SIZE, *p = mpc + MPC_HDR;
	uint16_t entries = 0;
	uint8_t ioapic_id = (uint8_t)ncpus;

	for (unsigned int i = 0; i < ncpus; i++, entries++, p += MPC_CPU) {
		p[0] = 0;                       /* processor */
		p[1] = (uint8_t)i;              /* local APIC id */
		p[2] = 0x14;                    /* local APIC version */
		p[3] = (uint8_t)(1 | (i == 0 ? 2 : 0)); /* enabled, bootstrap */
		st32(p + 4, 0x600);             /* CPU signature: family 6 */
		st32(p + 8, 0x201);             /* features: FPU, APIC */
	}
	p[0] = 1;                               /* bus */
	p[1] = 0;
	memcpy(p + 2, "ISA   ", 6);
	p += MPC_BUS, entries++;
	p[0] = 2;                               /* IOAPIC */
	p[1] = ioapic_id;
	p[2] = 0x11;
	p[3] = 1;                               /* enabled */
	st32(p + 4, IOAPIC_ADDR);
	p += MPC_IOAPIC, entries++;
	for (unsigned int pin = 0; pin < MPTABLE_IOAPIC_PINS; pin++, entries++, p += MPC_INTSRC) {
		p[0] = 3;                       /* I/O interrupt */
		p[1] = 0;                       /* INT */
		st16(p + 2, 0);                 /* conforms to the bus: edge, active high */
		p[4] = 0;                       /* source bus */
		p[5] = (uint8_t)pin;            /* source IRQ */
		p[6] = ioapic_id;
		p[7] = (uint8_t)pin;            /* destination pin */
	}
	for (unsigned int l = 0; l < 2; l++, entries++, p += MPC_LINTSRC) {
		p[0] = 4;                       /* local interrupt */
		p[1] = l == 0 ? 3 : 1;          /* ExtINT on LINT0, NMI on LINT1 */
		st16(p + 2, 0);
		p[4] = 0;
		p[5] = 0;
		p[6] = 0xff;                    /* every local APIC */
		p[7] = (uint8_t)l;
	}

	size_t mpc_len = (size_t)(p - mpc);
	memcpy(mpc, "PCMP", 4);
	st16(mpc + 4, (uint16_t)mpc_len);
	mpc[6] = 4;                             /* spec revision 1.4 */
	memcpy(mpc + 8, "KILN    ", 8);
	memcpy(mpc + 16, "KILN-VMM    ", 12);
	st16(mpc + 34, entries);
	st32(mpc + 36, LAPIC_ADDR);
	mpc[7] = (uint8_t)(0 - mptable_sum(mpc, mpc_len));

	memcpy(mpf, "_MP_", 4);
	st32(mpf + 4, gpa + MPF_SIZE);
	mpf[8] = 1;                             /* length in 16-byte units */
	mpf[9] = 4;
	mpf[10] = (uint8_t)(0 - mptable_sum(mpf, MPF_SIZE));
	return (int)total;
}
