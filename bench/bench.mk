# bench/bench.mk: `make bench` (included by the top Makefile; not part of `make check`).
# kiln-vmm against QEMU's `-M microvm` on the same kernel, initramfs, memory and vCPUs, run
# directly where /dev/kvm runs guests, else inside tests/kvmhost.sh (ratios only there).
# Table on stdout, raw figures in build/bench/results.txt. Knobs: see bench/run.sh.

bench: all guest-kernel initramfs
	@bench/run.sh
