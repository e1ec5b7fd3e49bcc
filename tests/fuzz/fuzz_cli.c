/*
 * fuzz_cli.c: libFuzzer harness for every command line kiln takes from a user (kiln run's options,
 * kiln-jailer's, kiln-vmm's, with --disk and --vsock values) and for the jailer's check of the exec
 * file's first bytes. build: make build/fuzz/fuzz_cli
 *
 * Byte 0 picks the parser (mod 4); the rest, split at NUL bytes, is the argument list (at most
 * 64), or for the ELF check the file's first bytes. Each accepted parse is checked against the
 * documented ranges, each refusal against the message rules: one line, non-empty, no control byte.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "agent_proto.h"
#include "jailer/validate.h"
#include "runner/opts.h"
#include "vmm/boot.h"
#include "vmm/cli.h"
#include "vmm/vm.h"
#include "tests/fuzz/fuzz_check.h"

#define MAX_ARGS 64

static char *argv_[MAX_ARGS + 2];
static int argc_;
static char err[512];

/* A refusal: one non-empty line without control bytes, inside the buffer. */
static void check_message(void)
{
	size_t n = strnlen(err, sizeof(err));

	CHECK(n > 0 && n < sizeof(err));
	for (size_t i = 0; i < n; i++)
		CHECK((unsigned char)err[i] >= 0x20 && err[i] != 0x7f);
}

static int all_in(const char *s, const char *set)
{
	for (; *s; s++)
		if (!strchr(set, *s))
			return 0;
	return 1;
}

static void check_run(void)
{
	static struct run_opts o;
	int r = run_opts_parse(argc_, argv_, &o, err, sizeof(err));

	if (r < 0) {
		CHECK(r == -EINVAL);
		check_message();
		return;
	}
	if (r == 1)
		return;
	CHECK(r == 0);
	CHECK(o.mem >= RUN_MEM_MIN && o.mem <= RUN_MEM_MAX && o.mem % (1u << 20) == 0);
	CHECK(o.vcpus >= 1 && o.vcpus <= RUN_VCPUS_MAX);
	CHECK(o.timeout_ms >= RUN_TIMEOUT_MIN_MS && o.timeout_ms <= RUN_TIMEOUT_MAX_MS);
	CHECK(o.cpu_ms == 0 || (o.cpu_ms >= RUN_CPU_MIN_MS && o.cpu_ms <= RUN_CPU_MAX_MS && o.cpu_ms % 1000 == 0));
	CHECK(o.pids >= 1 && o.pids <= RUN_PIDS_MAX);
	CHECK(o.output_max <= RUN_OUT_MAX);
	CHECK(o.disk >= RUN_DISK_MIN && o.disk <= RUN_DISK_MAX && o.disk % 4096 == 0);
	CHECK(o.nenv <= RUN_ENV_MAX);
	for (uint32_t i = 0; i < o.nenv; i++) {
		const char *eq = strchr(o.env[i], '=');
		CHECK(eq && eq != o.env[i] && !(o.env[i][0] >= '0' && o.env[i][0] <= '9'));
		CHECK(strlen(o.env[i]) <= KA_ARG_MAX);
	}
	CHECK(!o.cwd || (o.cwd[0] && strlen(o.cwd) <= KA_PATH_MAX));
	CHECK(o.nput <= RUN_FILES_MAX && o.nget <= RUN_FILES_MAX);
	for (uint32_t i = 0; i < o.nput + o.nget; i++) {
		const struct run_xfer *x = i < o.nput ? &o.put[i] : &o.get[i - o.nput];
		CHECK(x->host[0] && strlen(x->host) <= 4095);
		CHECK(ka_path_check(x->guest, strlen(x->guest), NULL) == 0);
	}
	if (o.image && !o.image_is_path)
		CHECK(strlen(o.image) >= 1 && strlen(o.image) <= 32 &&
		      all_in(o.image, "abcdefghijklmnopqrstuvwxyz0123456789-"));
	if (o.image && o.image_is_path)
		CHECK(strchr(o.image, '/') && strlen(o.image) <= 4095);
	CHECK(!o.kernel || (o.kernel[0] && strlen(o.kernel) <= 4095));
	CHECK(o.result_fd == -1 || (o.result_fd >= 1 && o.result_fd <= 65535));
	CHECK(!(o.json && o.result_fd >= 0));
	CHECK(o.argc >= 1 && (unsigned)o.argc <= KA_ARGC_MAX && o.argv + o.argc == argv_ + argc_);
	CHECK(o.argv[0][0]);
	CHECK(run_exec_payload_size(&o) <= KA_MAX_PAYLOAD);
}

static void check_jail(void)
{
	static struct jail_config c;
	int r = jail_parse_args(argc_, argv_, &c, err, sizeof(err));

	if (r < 0) {
		CHECK(r == -EINVAL);
		check_message();
		return;
	}
	CHECK(r == 0);
	if (c.help)
		return;
	CHECK(c.id && jail_valid_id(c.id));
	CHECK(jail_valid_abs_path(c.chroot_base) && jail_valid_cgroup_path(c.parent_cgroup));
	CHECK(!(c.no_cgroup && c.ncg) && !(c.userns && c.netns) && !(c.userns && c.exec_cache));
	CHECK(c.vmm_argv + c.vmm_argc == argv_ + argc_);
	if (c.cleanup) {
		CHECK(!c.exec_file && !c.have_uid && !c.have_gid && !c.nres && !c.ncg && !c.vmm_argc);
		return;
	}
	CHECK(c.exec_file && jail_valid_abs_path(c.exec_file) && jail_valid_name(c.exec_name));
	CHECK(strcmp(c.exec_name, "dev") != 0);
	CHECK(c.have_uid && c.have_gid && c.uid != 0 && c.gid != 0 && c.uid != UINT32_MAX && c.gid != UINT32_MAX);
	CHECK(c.nres <= JAIL_MAX_RESOURCES);
	for (size_t i = 0; i < c.nres; i++) {
		CHECK(jail_valid_abs_path(c.res[i].path) && jail_valid_name(c.res[i].name));
		CHECK(strcmp(c.res[i].name, "dev") != 0 && strcmp(c.res[i].name, c.exec_name) != 0);
		for (size_t k = 0; k < i; k++)
			CHECK(strcmp(c.res[i].name, c.res[k].name) != 0);
	}
	CHECK(c.ncg <= JAIL_MAX_CGROUP);
	for (size_t i = 0; i < c.ncg; i++) {
		char file[32];
		const char *eq = strchr(c.cg[i].file, '=');
		CHECK(eq && eq + 1 == c.cg[i].value && (size_t)(eq - c.cg[i].file) < sizeof(file));
		memcpy(file, c.cg[i].file, (size_t)(eq - c.cg[i].file));
		file[eq - c.cg[i].file] = '\0';
		CHECK(jail_check_cgroup(file, c.cg[i].value) == 0);
		for (size_t k = 0; k < i; k++)
			CHECK(strncmp(c.cg[k].file, file, strlen(file) + 1) != 0 &&
			      !(strncmp(c.cg[k].file, file, strlen(file)) == 0 && c.cg[k].file[strlen(file)] == '='));
	}
	int nofile = 0, core = 0;
	CHECK(c.nrl <= JAIL_MAX_RLIMITS);
	for (size_t i = 0; i < c.nrl; i++) {
		nofile += c.rl[i].resource == RLIMIT_NOFILE;
		core += c.rl[i].resource == RLIMIT_CORE;
		for (size_t k = 0; k < i; k++)
			CHECK(c.rl[i].resource != c.rl[k].resource);
	}
	CHECK(nofile == 1 && core == 1);
	CHECK(c.nkeep <= JAIL_MAX_KEEP_FDS);
	for (size_t i = 0; i < c.nkeep; i++) {
		CHECK(c.keep_fds[i] >= 3 && c.keep_fds[i] <= 65535);
		for (size_t k = 0; k < i; k++)
			CHECK(c.keep_fds[i] != c.keep_fds[k]);
	}
	CHECK(c.nenv <= JAIL_MAX_ENV);
	for (size_t i = 0; i < c.nenv; i++)
		CHECK(jail_check_env(c.env[i]));
}

static void check_vmm(void)
{
	static struct vmm_opts o;
	int r = vmm_cli_parse(argc_, argv_, &o, err, sizeof(err));

	if (r < 0) {
		CHECK(r == -EINVAL);
		check_message();
		return;
	}
	CHECK(r == VMM_CLI_RUN || r == VMM_CLI_HELP || r == VMM_CLI_POLICY);
	if (r != VMM_CLI_RUN)
		return;
	CHECK(o.kernel);
	CHECK(o.mem_mib >= VM_MIN_MEM_MIB && o.mem_mib <= VM_MAX_MEM_MIB);
	CHECK(o.vcpus >= 1 && o.vcpus <= VM_MAX_VCPUS);
	CHECK(strlen(o.cmdline) <= BOOT_CMDLINE_MAX);
	CHECK(o.ndisks <= VMM_MAX_DISKS);
	for (unsigned i = 0; i < o.ndisks; i++) {
		CHECK(o.disk[i].path && o.disk[i].path[0] && !strchr(o.disk[i].path, ','));
		CHECK(strlen(o.disk[i].serial) <= BLK_ID_BYTES);
	}
	if (o.has_vsock)
		CHECK(o.vsock.cid >= 3 && o.vsock.uds && o.vsock.uds[0] && strlen(o.vsock.uds) < VSOCK_UDS_MAX);
	CHECK(o.hold_fd == -1 || o.hold_fd >= 3);
}

/* An independent reading of what jail_check_elf accepts. */
static int elf_ok(const uint8_t *b, size_t n)
{
	if (n < 64 || memcmp(b, "\177ELF", 4) != 0 || b[4] != 2 || b[5] != 1)
		return 0;
	unsigned type = b[16] | b[17] << 8, machine = b[18] | b[19] << 8;
	if ((type != 2 && type != 3) || machine != 62)
		return 0;
	unsigned __int128 phoff = 0;
	for (int i = 7; i >= 0; i--)
		phoff = phoff << 8 | b[32 + i];
	unsigned entsz = b[54] | b[55] << 8, num = b[56] | b[57] << 8;
	if (entsz < 56 || phoff + (unsigned __int128)entsz * num > n)
		return 0;
	for (unsigned i = 0; i < num; i++) {
		const uint8_t *p = b + (size_t)phoff + (size_t)i * entsz;
		if (p[0] == 3 && p[1] == 0 && p[2] == 0 && p[3] == 0)
			return 0;
	}
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char store[4096 * 2];

	if (size < 1)
		return 0;
	unsigned which = data[0] % 4;
	data++;
	size--;
	if (which == 3) {
		uint8_t *copy = malloc(size ? size : 1); /* exact size: ASan sees any read past it */
		if (!copy)
			return 0;
		memcpy(copy, data, size);
		int r = jail_check_elf(copy, size, err, sizeof(err));
		CHECK(r == 0 || r == -EINVAL);
		CHECK((r == 0) == elf_ok(copy, size));
		if (r < 0)
			check_message();
		free(copy);
		return 0;
	}
	if (size >= sizeof(store))
		return 0;
	memcpy(store, data, size);
	store[size] = '\0';
	static const char *const prog[] = { "run", "kiln-jailer", "kiln-vmm" };
	argc_ = 0;
	argv_[argc_++] = (char *)prog[which];
	for (size_t i = 0; i < size && argc_ <= MAX_ARGS; argc_++) {
		argv_[argc_] = store + i;
		i += strlen(store + i) + 1;
	}
	argv_[argc_] = NULL;
	switch (which) {
	case 0: check_run(); break;
	case 1: check_jail(); break;
	default: check_vmm(); break;
	}
	return 0;
}
