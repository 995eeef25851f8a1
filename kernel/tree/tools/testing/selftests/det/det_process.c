// SPDX-License-Identifier: GPL-2.0
/*
 * Deterministic process lifecycle: creation on first dput(), DET_START,
 * dret(), blocking, DET_GET_STATUS, DET_DONT_WAIT, DET_REGS, DET_KILL,
 * exit status, per-parent IDs, and round-trip timings.
 */
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/user.h>
#include <stddef.h>

#include "det_test.h"

static volatile long shared_var = 5;

TEST(create_stopped_start_dret)
{
	struct det_status st;
	long r;

	ASSERT_EQ(0, become_master());

	r = dput(1, 0, 0, 0, 0);
	if (r == 0) {
		/* Child: its memory is a private copy. */
		shared_var = 99;
		dret();
		det_exit(shared_var == 99 ? 0 : 1);
	}
	ASSERT_EQ(DET_S_READY, r);
	ASSERT_EQ(DET_S_READY, det_status(1, &st));
	EXPECT_EQ(DET_S_READY, st.status);
	EXPECT_EQ(DET_R_NONE, st.reason);
	EXPECT_EQ(-1, st.syscall_nr);

	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, det_status(1, &st));
	EXPECT_EQ(DET_R_DRET, st.reason);
	EXPECT_NE(0, st.ip);
	EXPECT_EQ(5, shared_var);

	ASSERT_EQ(DET_S_RUNNING, dget(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_EXIT_NORMAL, dget(1, 0, 0, 0, 0));
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1, &st));
	EXPECT_EQ(DET_R_EXIT, st.reason);
	EXPECT_EQ(0, st.exit_code);
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
	ASSERT_EQ(-ESRCH, dget(1, 0, 0, 0, 0));
}

TEST(exit_code_readable)
{
	struct user_regs_struct regs;
	struct det_status st;
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(7, DET_START, 0, 0, 0);
	if (r == 0)
		det_exit(42);
	ASSERT_EQ(DET_S_RUNNING, r);
	ASSERT_EQ(DET_S_EXIT_NORMAL, dget(7, 0, 0, 0, 0));
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(7, &st));
	EXPECT_EQ(DET_R_EXIT, st.reason);
	EXPECT_EQ(42, st.exit_code);
	EXPECT_EQ(0, st.signo);
	/* A dead child cannot be started or have its registers read. */
	EXPECT_EQ(-ECHILD, dput(7, DET_START, 0, 0, 0));
	EXPECT_EQ(-ECHILD, dget(7, DET_REGS | DET_GENERAL_REGS,
				(unsigned long)&regs, sizeof(regs), 0));
	EXPECT_EQ(0, dput(7, DET_KILL, 0, 0, 0));
}

/* dget() blocks until the child stops: the child's work is complete. */
TEST(dget_waits_for_stop)
{
	struct user_regs_struct regs;
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(3, DET_START, 0, 0, 0);
	if (r == 0) {
		volatile unsigned long sum = 0;
		unsigned long i;

		for (i = 0; i < 20000000; i++)
			sum += i;
		det_raw5(DET_NR_DRET, sum, 0, 0, 0, 0);
		det_exit(0);
	}
	ASSERT_EQ(DET_S_RUNNING, r);
	ASSERT_EQ(DET_S_READY, dget(3, DET_REGS | DET_GENERAL_REGS,
				    (unsigned long)&regs, sizeof(regs), 0));
	EXPECT_EQ(19999999UL * 20000000UL / 2, regs.rdi);
	EXPECT_EQ(DET_NR_DRET, regs.orig_rax);
	/* dput() blocks the same way. */
	ASSERT_EQ(DET_S_RUNNING, dput(3, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_EXIT_NORMAL, dput(3, 0, 0, 0, 0));
}

/* The parent sets rax: that is what dret() returns in the child. */
TEST(regs_put_general)
{
	struct user_regs_struct regs;
	struct det_status st;
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(1, DET_START, 0, 0, 0);
	if (r == 0) {
		r = dret();
		det_exit((int)r);
	}
	ASSERT_EQ(DET_S_READY, dget(1, DET_REGS | DET_GENERAL_REGS,
				    (unsigned long)&regs, sizeof(regs), 0));
	EXPECT_EQ(0, regs.rax);
	regs.rax = 77;
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_REGS | DET_GENERAL_REGS | DET_START,
				      (unsigned long)&regs, sizeof(regs), 0));
	ASSERT_EQ(DET_S_EXIT_NORMAL, dget(1, 0, 0, 0, 0));
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1, &st));
	EXPECT_EQ(77, st.exit_code);
}

/* Registers put into a new, never-started child: it starts elsewhere. */
static void __attribute__((noreturn, used)) det_alt_entry(void)
{
	det_exit(55);
}

TEST(regs_put_new_child_ip)
{
	struct user_regs_struct regs;
	struct det_status st;
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(2, 0, 0, 0, 0);
	if (r == 0)
		det_exit(1);
	ASSERT_EQ(DET_S_READY, r);
	ASSERT_EQ(DET_S_READY, dget(2, DET_REGS | DET_GENERAL_REGS,
				    (unsigned long)&regs, sizeof(regs), 0));
	regs.rip = (unsigned long)det_alt_entry;
	regs.rsp = (regs.rsp & ~15UL) - 8;
	ASSERT_EQ(DET_S_RUNNING, dput(2, DET_REGS | DET_GENERAL_REGS | DET_START,
				      (unsigned long)&regs, sizeof(regs), 0));
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(2, &st));
	EXPECT_EQ(55, st.exit_code);
}

/* FP/SSE state: read xmm0 the child set, put another value back. */
TEST(regs_fp)
{
	struct user_fpregs_struct fp;
	struct det_status st;
	unsigned int *xmm0;
	long r;

	ASSERT_EQ(DET_FP_REGS_SIZE, sizeof(fp));
	ASSERT_EQ(0, become_master());
	r = dput(1, DET_START, 0, 0, 0);
	if (r == 0) {
		unsigned int v[4] __attribute__((aligned(16))) = {
			0x11111111, 0x22222222, 0x33333333, 0x44444444 };
		unsigned int out[4] __attribute__((aligned(16)));

		__asm__ volatile("movdqa %0, %%xmm0" : : "m"(v) : "xmm0");
		det_raw5(DET_NR_DRET, 0, 0, 0, 0, 0);
		__asm__ volatile("movdqa %%xmm0, %0" : "=m"(out) : : "xmm0");
		det_exit(out[0] == 0xcafef00d && out[3] == 0x44444444 ? 3 : 4);
	}
	ASSERT_EQ(DET_S_READY, dget(1, DET_REGS | DET_FP_REGS,
				    (unsigned long)&fp, sizeof(fp), 0));
	xmm0 = fp.xmm_space;
	EXPECT_EQ(0x11111111, xmm0[0]);
	EXPECT_EQ(0x44444444, xmm0[3]);
	xmm0[0] = 0xcafef00d;
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_REGS | DET_FP_REGS | DET_START,
				      (unsigned long)&fp, sizeof(fp), 0));
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1, &st));
	EXPECT_EQ(3, st.exit_code);
}

/* Both register sets in one buffer, general first. */
TEST(regs_both)
{
	struct {
		struct user_regs_struct g;
		struct user_fpregs_struct f;
	} __attribute__((packed)) both;
	long r;

	ASSERT_EQ(DET_GENERAL_REGS_SIZE + DET_FP_REGS_SIZE, sizeof(both));
	ASSERT_EQ(0, become_master());
	r = dput(1, 0, 0, 0, 0);
	if (r == 0)
		det_exit(0);
	memset(&both, 0, sizeof(both));
	ASSERT_EQ(DET_S_READY, dget(1, DET_REGS | DET_GENERAL_REGS | DET_FP_REGS,
				    (unsigned long)&both, sizeof(both), 0));
	EXPECT_EQ(DET_NR_DPUT, both.g.orig_rax);
	EXPECT_NE(0, both.g.rip);
	EXPECT_NE(0, both.f.mxcsr);
	ASSERT_EQ(DET_S_READY, dput(1, DET_REGS | DET_GENERAL_REGS | DET_FP_REGS,
				    (unsigned long)&both, sizeof(both), 0));
}

/*
 * Extended state (DET_XSTATE_REGS): the AVX upper halves, in the XSAVE
 * standard format at DET_XSTATE_YMM_OFFSET.  AVX only (vbroadcastss,
 * vinsertf128, vextractf128, vmovq); the child does all its vector work and
 * its dret() in one asm statement, so the compiler cannot touch ymm0 between.
 */
#define YMM_LO	0x0badf00dU
#define YMM_HI	0x5eed1e55U

static void *xstate_buf(long *size)
{
	void *buf;

	if (!__builtin_cpu_supports("avx"))
		return NULL;
	*size = det_xstate_size();
	printf("# DET_XSTATE_REGS size: %ld bytes\n", *size);
	if (*size < DET_XSTATE_YMM_OFFSET + 16 * 16 || *size % 64)
		return NULL;
	buf = aligned_alloc(64, *size);
	if (buf)
		memset(buf, 0xa5, *size);
	return buf;
}

TEST(regs_xstate_get)
{
	unsigned int *ymm0_hi, *xmm0;
	__u64 xfeatures;
	unsigned char *x;
	long size, r;

	ASSERT_EQ(0, become_master());
	if (!__builtin_cpu_supports("avx"))
		SKIP(return, "no AVX");
	x = xstate_buf(&size);
	ASSERT_NE(NULL, x);
	EXPECT_EQ(DET_GENERAL_REGS_SIZE + DET_FP_REGS_SIZE + size,
		  dget(0, DET_REGS | DET_GENERAL_REGS | DET_FP_REGS |
		       DET_XSTATE_REGS, 0, 0, 0));
	r = dput(1, DET_START, 0, 0, 0);
	if (r == 0) {
		unsigned int lo = YMM_LO, hi = YMM_HI;

		__asm__ volatile("vbroadcastss %[lo], %%xmm1\n\t"
				 "vbroadcastss %[hi], %%xmm2\n\t"
				 "vinsertf128 $1, %%xmm2, %%ymm1, %%ymm0\n\t"
				 "syscall"
				 : "=a"(r)
				 : "0"((long)DET_NR_DRET), [lo] "m"(lo),
				   [hi] "m"(hi)
				 : "rcx", "r11", "memory", "xmm0", "xmm1",
				   "xmm2");
		det_exit(0);
	}
	ASSERT_EQ(DET_S_RUNNING, r);
	ASSERT_EQ(DET_S_READY, dget(1, DET_REGS | DET_XSTATE_REGS,
				    (unsigned long)x, size, 0));
	memcpy(&xfeatures, x + DET_XSTATE_HDR_OFFSET, sizeof(xfeatures));
	EXPECT_NE(0, xfeatures & (1 << 2)) {
		TH_LOG("xfeatures %#llx", (unsigned long long)xfeatures);
	}
	/* FXSAVE image first: xmm0 at byte 160. */
	xmm0 = (unsigned int *)(x + 160);
	ymm0_hi = (unsigned int *)(x + DET_XSTATE_YMM_OFFSET);
	EXPECT_EQ(YMM_LO, xmm0[0]);
	EXPECT_EQ(YMM_LO, xmm0[3]);
	EXPECT_EQ(YMM_HI, ymm0_hi[0]);
	EXPECT_EQ(YMM_HI, ymm0_hi[3]);
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
	free(x);
}

TEST(regs_xstate_put)
{
	struct user_regs_struct regs;
	unsigned int *ymm0_hi;
	__u64 xfeatures, xcomp_bv;
	unsigned char *x;
	long size, r;

	ASSERT_EQ(0, become_master());
	if (!__builtin_cpu_supports("avx"))
		SKIP(return, "no AVX");
	x = xstate_buf(&size);
	ASSERT_NE(NULL, x);
	r = dput(1, DET_START, 0, 0, 0);
	if (r == 0) {
		/* ymm0 zero, dret(), then rdi = ymm0[191:128], dret(). */
		__asm__ volatile("vxorps %%ymm0, %%ymm0, %%ymm0\n\t"
				 "syscall\n\t"
				 "vextractf128 $1, %%ymm0, %%xmm1\n\t"
				 "vmovq %%xmm1, %%rdi\n\t"
				 "movl %[nr], %%eax\n\t"
				 "syscall"
				 : "=a"(r)
				 : "0"((long)DET_NR_DRET), [nr] "i"(DET_NR_DRET)
				 : "rcx", "r11", "rdi", "memory", "xmm0",
				   "xmm1");
		det_exit(0);
	}
	ASSERT_EQ(DET_S_RUNNING, r);
	ASSERT_EQ(DET_S_READY, dget(1, DET_REGS | DET_XSTATE_REGS,
				    (unsigned long)x, size, 0));
	ymm0_hi = (unsigned int *)(x + DET_XSTATE_YMM_OFFSET);
	EXPECT_EQ(0, ymm0_hi[0]);
	ymm0_hi[0] = YMM_LO;
	ymm0_hi[1] = YMM_HI;
	/* The component may be in its init state: mark it present. */
	memcpy(&xfeatures, x + DET_XSTATE_HDR_OFFSET, sizeof(xfeatures));
	xfeatures |= 1 << 2;
	memcpy(x + DET_XSTATE_HDR_OFFSET, &xfeatures, sizeof(xfeatures));

	/* Validated as PTRACE_SETREGSET does: no compacted format. */
	xcomp_bv = 1ULL << 63 | xfeatures;
	memcpy(x + DET_XSTATE_HDR_OFFSET + 8, &xcomp_bv, sizeof(xcomp_bv));
	EXPECT_EQ(-EINVAL, dput(1, DET_REGS | DET_XSTATE_REGS,
				(unsigned long)x, size, 0));
	xcomp_bv = 0;
	memcpy(x + DET_XSTATE_HDR_OFFSET + 8, &xcomp_bv, sizeof(xcomp_bv));

	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_REGS | DET_XSTATE_REGS | DET_START,
				      (unsigned long)x, size, 0));
	ASSERT_EQ(DET_S_READY, dget(1, DET_REGS | DET_GENERAL_REGS,
				    (unsigned long)&regs, sizeof(regs), 0));
	EXPECT_EQ(DET_NR_DRET, regs.orig_rax);
	EXPECT_EQ((unsigned long)YMM_HI << 32 | YMM_LO, regs.rdi);
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
	free(x);
}

TEST(dont_wait_and_kill_poison)
{
	struct det_status st;
	double t0, t1;
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(9, DET_START, 0, 0, 0);
	if (r == 0)
		for (;;)
			;
	ASSERT_EQ(DET_S_RUNNING, r);
	memset(&st, 0xa5, sizeof(st));
	ASSERT_EQ(DET_S_RUNNING, dget(9, DET_GET_STATUS | DET_DONT_WAIT,
				      (unsigned long)&st, sizeof(st), 0));
	EXPECT_EQ(DET_S_RUNNING, st.status);
	EXPECT_EQ(DET_R_NONE, st.reason);
	ASSERT_EQ(DET_S_RUNNING, dget(9, DET_GET_STATUS | DET_DONT_WAIT,
				      0, 0, 0));
	t0 = now_us();
	ASSERT_EQ(0, dput(9, DET_KILL | DET_KILL_POISON, 0, 0, 0));
	t1 = now_us();
	printf("# kill of a running child (DET_KILL_POISON): %.0f us\n",
	       t1 - t0);
	EXPECT_EQ(-ESRCH, dget(9, 0, 0, 0, 0));
	EXPECT_EQ(0, count_children_of(getpid()));
}

/*
 * DET_KILL_NOWAIT returns at once with the ID free; the killed children
 * die on their own and are released by later calls (and at exit).
 */
TEST(kill_nowait_frees_the_id_at_once)
{
	int i, n = -1;
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(9, DET_START, 0, 0, 0);
	if (r == 0)
		for (;;)
			;
	ASSERT_EQ(DET_S_RUNNING, r);
	ASSERT_EQ(0, dput(9, DET_KILL | DET_KILL_POISON | DET_KILL_NOWAIT,
			  0, 0, 0));
	EXPECT_EQ(-ESRCH, dget(9, 0, 0, 0, 0));
	/* The same ID, a new child, at once. */
	r = dput(9, DET_START, 0, 0, 0);
	if (r == 0) {
		dret();
		det_exit(0);
	}
	ASSERT_EQ(DET_S_READY, dget(9, 0, 0, 0, 0));
	/* Many more: each kill sweeps the dead ones up. */
	for (i = 0; i < 40; i++) {
		r = dput(100 + i, DET_START, 0, 0, 0);
		if (r == 0)
			for (;;)
				;
		ASSERT_EQ(DET_S_RUNNING, r);
		ASSERT_EQ(0, dput(100 + i, DET_KILL | DET_KILL_POISON |
				  DET_KILL_NOWAIT, 0, 0, 0));
	}
	/* Only child 9 is left once they have died. */
	for (i = 0; i < 100 && n != 1; i++) {
		n = count_children_of(getpid());
		if (n != 1)
			usleep(50000);
	}
	EXPECT_EQ(1, n);
	/* Without NOWAIT, DET_KILL still returns with the child gone. */
	ASSERT_EQ(0, dput(9, DET_KILL, 0, 0, 0));
	EXPECT_EQ(0, count_children_of(getpid()));
	/* An op-flag DET_KILL does not know. */
	EXPECT_EQ(-EINVAL, dput(9, DET_KILL | 0x00040000, 0, 0, 0));
}

TEST(kill_stopped_gone_from_proc)
{
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(4, 0, 0, 0, 0);
	if (r == 0)
		det_exit(0);
	ASSERT_EQ(1, count_children_of(getpid()));
	ASSERT_EQ(0, dput(4, DET_KILL, 0, 0, 0));
	EXPECT_EQ(0, count_children_of(getpid()));
	EXPECT_EQ(-ESRCH, dput(4, DET_KILL, 0, 0, 0));
	/* The ID is free again. */
	r = dput(4, 0, 0, 0, 0);
	if (r == 0)
		det_exit(0);
	EXPECT_EQ(DET_S_READY, r);
}

/* IDs are per parent: child 1 has its own child 1. */
TEST(ids_per_parent_and_nesting)
{
	struct det_status st;
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(1, DET_START, 0, 0, 0);
	if (r == 0) {
		struct det_status cst;

		r = dput(1, DET_START, 0, 0, 0);
		if (r == 0)
			det_exit(9);
		if (r != DET_S_RUNNING)
			det_exit(200);
		if (dget(1, DET_GET_STATUS, (unsigned long)&cst,
			 sizeof(cst), 0) != DET_S_EXIT_NORMAL)
			det_exit(201);
		if (dput(1, DET_KILL, 0, 0, 0) != 0)
			det_exit(202);
		det_exit(100 + cst.exit_code);
	}
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1, &st));
	EXPECT_EQ(109, st.exit_code);
}

/* Many children side by side, each with its own ID. */
TEST(many_children)
{
	struct det_status st;
	long i, r;

	ASSERT_EQ(0, become_master());
	for (i = 0; i < 16; i++) {
		r = dput(1000 + i, DET_START, 0, 0, 0);
		if (r == 0)
			det_exit((int)i);
		ASSERT_EQ(DET_S_RUNNING, r);
	}
	for (i = 0; i < 16; i++) {
		ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1000 + i, &st));
		EXPECT_EQ(i, st.exit_code);
		ASSERT_EQ(0, dput(1000 + i, DET_KILL, 0, 0, 0));
	}
	/* IDs are unsigned long: the extremes work. */
	r = dput(~0UL, 0, 0, 0, 0);
	if (r == 0)
		det_exit(0);
	EXPECT_EQ(DET_S_READY, r);
	r = dput(0, 0, 0, 0, 0);
	if (r == 0)
		det_exit(0);
	EXPECT_EQ(DET_S_READY, r);
}

/*
 * A child the kernel kills (here: the RLIMIT_CPU hard limit; the soft
 * limit's SIGXCPU is discarded) is reported as DET_S_EXCEPT_DEAD.
 */
TEST(killed_by_kernel_except_dead)
{
	struct rlimit old, lim = { .rlim_cur = 1, .rlim_max = 2 };
	struct det_status st;
	long r;

	ASSERT_EQ(0, become_master());
	ASSERT_EQ(0, getrlimit(RLIMIT_CPU, &old));
	ASSERT_EQ(0, setrlimit(RLIMIT_CPU, &lim));
	r = dput(1, DET_START, 0, 0, 0);
	if (r == 0)
		for (;;)
			;
	ASSERT_EQ(DET_S_RUNNING, r);
	ASSERT_EQ(0, setrlimit(RLIMIT_CPU, &old));
	ASSERT_EQ(DET_S_EXCEPT_DEAD, det_status(1, &st));
	EXPECT_EQ(DET_R_KILLED, st.reason);
	EXPECT_EQ(SIGKILL, st.signo);
	EXPECT_EQ(-ECHILD, dput(1, DET_START, 0, 0, 0));
	EXPECT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

/* Round trip: create+start+dret+reap vs fork+exit+wait, same run. */
TEST(timing_round_trip)
{
	const int n = 200;
	double t0, fork_us, det_us;
	int i, status;
	long r;

	t0 = now_us();
	for (i = 0; i < n; i++) {
		pid_t pid = fork();

		ASSERT_LE(0, pid);
		if (pid == 0)
			_exit(0);
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
	}
	fork_us = (now_us() - t0) / n;

	ASSERT_EQ(0, become_master());
	t0 = now_us();
	for (i = 0; i < n; i++) {
		r = dput(5, DET_START, 0, 0, 0);
		if (r == 0) {
			dret();
			det_exit(0);
		}
		ASSERT_EQ(DET_S_RUNNING, r);
		ASSERT_EQ(DET_S_READY, dget(5, 0, 0, 0, 0));
		ASSERT_EQ(0, dput(5, DET_KILL, 0, 0, 0));
	}
	det_us = (now_us() - t0) / n;
	printf("# fork+exit+wait round trip: %.1f us\n", fork_us);
	printf("# dput(create|start)+dret+dget+DET_KILL round trip: %.1f us (%.2fx fork)\n",
	       det_us, det_us / fork_us);
}

TEST_HARNESS_MAIN
