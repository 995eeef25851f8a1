// SPDX-License-Identifier: GPL-2.0
/*
 * Enforcement in deterministic processes: every system call but dput,
 * dget, dret, exit and exit_group stops the process with the number
 * reported; fault signals become an implicit dret with signal and address
 * reported; rdtsc/rdtscp fault; the vDSO and vvar pages are gone.  The
 * master keeps reading time normally.
 */
#include <sys/auxv.h>
#include <sys/user.h>
#include <x86intrin.h>

#include <sys/rseq.h>

#include "det_test.h"

#define X32_BIT 0x40000000L
#define FIRST_PAST_TABLE 1003	/* dret is 1002, the highest number */
#define LAST_TRIED (FIRST_PAST_TABLE + 100)

static bool allowed_nr(long nr)
{
	return nr == __NR_exit || nr == __NR_exit_group ||
	       nr == DET_NR_DPUT || nr == DET_NR_DGET || nr == DET_NR_DRET;
}

static const long extra_nrs[] = {
	X32_BIT | 0, X32_BIT | 1, X32_BIT | 39, X32_BIT | __NR_exit,
	X32_BIT | __NR_exit_group, X32_BIT | 512, X32_BIT | 547,
	X32_BIT | DET_NR_DPUT, X32_BIT | DET_NR_DRET,
	-1L, -2L, 0x7fffffffL, 0x80000000L, 0xffffffffL, 2048, 65535,
};

#define N_EXTRA ARRAY_SIZE(extra_nrs)

static void __attribute__((noreturn)) syscall_child(void)
{
	int bad = 0;
	long nr, ret;
	unsigned int i;

	for (nr = 0; nr <= LAST_TRIED; nr++) {
		if (allowed_nr(nr))
			continue;
		ret = det_raw5(nr, 0, 0, 0, 0, 0);
		if (ret != -ENOSYS)
			bad++;
	}
	for (i = 0; i < N_EXTRA; i++) {
		ret = det_raw5(extra_nrs[i], 0, 0, 0, 0, 0);
		if (ret != -ENOSYS)
			bad++;
	}
	det_exit(bad ? 100 : 0);
}

/* Every number from 0 past the end of the table, plus odd ones. */
TEST(every_syscall_number_stops)
{
	struct det_status st;
	long nr, r, expect_nr;
	unsigned int i = 0, stops = 0;

	ASSERT_EQ(0, become_master());
	r = dput(1, DET_START, 0, 0, 0);
	if (r == 0)
		syscall_child();
	ASSERT_EQ(DET_S_RUNNING, r);

	for (nr = 0; nr <= LAST_TRIED + (long)N_EXTRA; nr++) {
		if (nr <= LAST_TRIED) {
			if (allowed_nr(nr))
				continue;
			expect_nr = nr;
		} else {
			expect_nr = extra_nrs[i++];
		}
		r = det_status(1, &st);
		ASSERT_EQ(DET_S_EXCEPT, r) {
			TH_LOG("syscall %ld did not stop the child", expect_nr);
		}
		ASSERT_EQ(DET_R_SYSCALL, st.reason);
		ASSERT_EQ(expect_nr, st.syscall_nr);
		ASSERT_EQ(0, st.signo);
		stops++;
		ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	}
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1, &st));
	EXPECT_EQ(0, st.exit_code);
	printf("# %u system call numbers tried, each stopped the child\n",
	       stops);
}

/* The parent can emulate a stopped system call by setting rax. */
TEST(syscall_emulated_by_parent)
{
	struct user_regs_struct regs;
	struct det_status st;
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(1, DET_START, 0, 0, 0);
	if (r == 0) {
		r = det_raw5(__NR_getpid, 0, 0, 0, 0, 0);
		det_exit(r == 4242 ? 0 : 1);
	}
	ASSERT_EQ(DET_S_EXCEPT, dget(1, DET_REGS | DET_GENERAL_REGS,
				     (unsigned long)&regs, sizeof(regs), 0));
	EXPECT_EQ(__NR_getpid, regs.orig_rax);
	EXPECT_EQ(-ENOSYS, (long)regs.rax);
	regs.rax = 4242;
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_REGS | DET_GENERAL_REGS | DET_START,
				      (unsigned long)&regs, sizeof(regs), 0));
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1, &st));
	EXPECT_EQ(0, st.exit_code);
}

/* Run @fn in a new child; return its status after the first stop. */
static long run_child(unsigned long id, void (*fn)(void), struct det_status *st)
{
	long r = dput(id, DET_START, 0, 0, 0);

	if (r == 0) {
		fn();
		det_exit(0);
	}
	if (r != DET_S_RUNNING)
		return -1000 + r;
	return det_status(id, st);
}

static void do_int80(void)
{
	/* 32-bit exit(0): must not exit the child. */
	__asm__ volatile("mov $1, %%eax; xor %%ebx, %%ebx; int $0x80"
			 ::: "eax", "ebx", "memory");
	det_exit(0);
}

/* The 32-bit entry: either stopped as a syscall or as a fault. */
TEST(int80_stops)
{
	struct det_status st;

	ASSERT_EQ(0, become_master());
	ASSERT_EQ(DET_S_EXCEPT, run_child(1, do_int80, &st));
	if (st.reason == DET_R_SYSCALL) {
		EXPECT_EQ(1, st.syscall_nr);
	} else {
		ASSERT_EQ(DET_R_SIGNAL, st.reason);
		EXPECT_EQ(SIGSEGV, st.signo);
	}
	printf("# int $0x80: stopped by %s\n",
	       st.reason == DET_R_SYSCALL ? "syscall check" : "#GP (no IA32 emulation)");
}

static void do_vsyscall(void)
{
	long (*vgtod)(void *, void *) = (void *)0xffffffffff600000UL;
	char tv[16];

	vgtod(tv, NULL);
	det_exit(1);
}

TEST(vsyscall_stops)
{
	struct det_status st;

	ASSERT_EQ(0, become_master());
	ASSERT_EQ(DET_S_EXCEPT, run_child(1, do_vsyscall, &st));
	ASSERT_EQ(DET_R_SIGNAL, st.reason);
	EXPECT_EQ(SIGSEGV, st.signo);
	EXPECT_EQ(0xffffffffff600000UL, st.ip);
}

static volatile unsigned long long tsc_sink;

static void do_rdtsc(void)
{
	tsc_sink = __rdtsc();
	det_exit(1);
}

static void do_rdtscp(void)
{
	unsigned int aux;

	tsc_sink = __rdtscp(&aux);
	det_exit(1);
}

TEST(rdtsc_faults)
{
	struct det_status st;
	const unsigned char *ip;

	ASSERT_EQ(0, become_master());
	/* The master reads the counter normally. */
	tsc_sink = __rdtsc();
	ASSERT_NE(0, tsc_sink);

	ASSERT_EQ(DET_S_EXCEPT, run_child(1, do_rdtsc, &st));
	ASSERT_EQ(DET_R_SIGNAL, st.reason);
	EXPECT_EQ(SIGSEGV, st.signo);
	ip = (const unsigned char *)st.ip;
	EXPECT_EQ(0x0f, ip[0]);
	EXPECT_EQ(0x31, ip[1]);
	/* Restarted as is, it faults again: never gets a value. */
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_EXCEPT, det_status(1, &st));
	EXPECT_EQ(SIGSEGV, st.signo);

	ASSERT_EQ(DET_S_EXCEPT, run_child(2, do_rdtscp, &st));
	ASSERT_EQ(DET_R_SIGNAL, st.reason);
	EXPECT_EQ(SIGSEGV, st.signo);
	ip = (const unsigned char *)st.ip;
	EXPECT_EQ(0x0f, ip[0]);
	EXPECT_EQ(0x01, ip[1]);
	EXPECT_EQ(0xf9, ip[2]);
}

static unsigned long vdso_base;

static void do_read_vdso(void)
{
	tsc_sink = *(volatile unsigned char *)vdso_base;
	det_exit(1);
}

static void do_read_vvar(void)
{
	tsc_sink = *(volatile unsigned char *)(vdso_base - 4096);
	det_exit(1);
}

TEST(vdso_and_vvar_gone)
{
	struct det_status st;
	struct timespec ts;

	vdso_base = getauxval(AT_SYSINFO_EHDR);
	ASSERT_NE(0, vdso_base);
	ASSERT_EQ(0, become_master());
	/* The master keeps its vDSO and reads the clock normally. */
	ASSERT_EQ(0x7f, *(volatile unsigned char *)vdso_base);
	ASSERT_EQ(0, clock_gettime(CLOCK_MONOTONIC, &ts));
	ASSERT_NE(0, ts.tv_sec + ts.tv_nsec);

	ASSERT_EQ(DET_S_EXCEPT, run_child(1, do_read_vdso, &st));
	ASSERT_EQ(DET_R_SIGNAL, st.reason);
	EXPECT_EQ(SIGSEGV, st.signo);
	EXPECT_EQ(vdso_base, st.addr);

	ASSERT_EQ(DET_S_EXCEPT, run_child(2, do_read_vvar, &st));
	ASSERT_EQ(DET_R_SIGNAL, st.reason);
	EXPECT_EQ(SIGSEGV, st.signo);
	EXPECT_EQ(vdso_base - 4096, st.addr);
}

static volatile unsigned long bad_addr = 16;

static void do_segv(void)
{
	tsc_sink = *(volatile int *)bad_addr;
}

static void do_fpe(void)
{
	unsigned int a = 1, d = 0, z = 0;

	/* Written in asm: the compiler turns 1 / x into a compare. */
	__asm__ volatile("divl %2" : "+a"(a), "+d"(d) : "r"(z));
	tsc_sink = a;
}

static void do_ill(void)
{
	__asm__ volatile("ud2");
}

static void do_trap(void)
{
	__asm__ volatile("int3");
	det_exit(33);
}

TEST(fault_signals_are_implicit_dret)
{
	struct det_status st;

	ASSERT_EQ(0, become_master());

	ASSERT_EQ(DET_S_EXCEPT, run_child(1, do_segv, &st));
	EXPECT_EQ(DET_R_SIGNAL, st.reason);
	EXPECT_EQ(SIGSEGV, st.signo);
	EXPECT_EQ(SEGV_MAPERR, st.code);
	EXPECT_EQ(16, st.addr);
	EXPECT_EQ(-1, st.syscall_nr);

	ASSERT_EQ(DET_S_EXCEPT, run_child(2, do_fpe, &st));
	EXPECT_EQ(SIGFPE, st.signo);
	EXPECT_EQ(FPE_INTDIV, st.code);
	EXPECT_EQ(st.ip, st.addr);

	ASSERT_EQ(DET_S_EXCEPT, run_child(3, do_ill, &st));
	EXPECT_EQ(SIGILL, st.signo);
	EXPECT_EQ(ILL_ILLOPN, st.code);
	EXPECT_EQ(st.ip, st.addr);

	/* A trap stops after the instruction: restarting continues. */
	ASSERT_EQ(DET_S_EXCEPT, run_child(4, do_trap, &st));
	EXPECT_EQ(SIGTRAP, st.signo);
	ASSERT_EQ(DET_S_RUNNING, dput(4, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(4, &st));
	EXPECT_EQ(33, st.exit_code);

	/* A faulted child is reaped with DET_KILL too. */
	EXPECT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
	EXPECT_EQ(0, dput(2, DET_KILL | DET_KILL_POISON, 0, 0, 0));
}

/*
 * A child does not inherit its master's rseq registration: the kernel
 * would write the CPU number into its memory after every switch.
 */
TEST(no_rseq_updates_in_child)
{
	struct rseq *rs;
	struct det_status st;
	long r;
	int k;

	if (!__rseq_size)
		SKIP(return, "libc registered no rseq area");
	rs = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
	ASSERT_EQ(0, become_master());
	r = dput(1, DET_START, 0, 0, 0);
	if (r == 0) {
		rs->cpu_id = 0xdead;
		rs->cpu_id_start = 0xbeef;
		for (k = 0; k < 20; k++)
			dret();
		det_exit(rs->cpu_id == 0xdead && rs->cpu_id_start == 0xbeef ?
			 0 : 1);
	}
	ASSERT_EQ(DET_S_RUNNING, r);
	for (k = 0; k < 20; k++) {
		ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
		ASSERT_EQ(DET_S_RUNNING, dget(1, DET_START, 0, 0, 0));
	}
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1, &st));
	EXPECT_EQ(0, st.exit_code);
}

TEST_HARNESS_MAIN
