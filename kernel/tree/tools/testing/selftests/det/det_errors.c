// SPDX-License-Identifier: GPL-2.0
/*
 * Every flag and errno of dput()/dget()/dret(), and which error wins when
 * several arguments are bad (the order documented in kernel/det/syscalls.c:
 * EINVAL, role, child, wait, EFAULT).  Memory operations' own errors are
 * in det_memory.c.
 */
#include <pthread.h>
#include <sys/user.h>
#include <sys/wait.h>

#include "det_test.h"

#define KPTR 0xffff888000000000UL
static const char ro_data[4096] __attribute__((aligned(4096))) = "ro";

TEST(legacy_caller)
{
	sigset_t set;

	sigemptyset(&set);
	EXPECT_EQ(-EPERM, dput(1, 0, 0, 0, 0));
	EXPECT_EQ(-EPERM, dput(1, DET_START, 0, 0, 0));
	EXPECT_EQ(-EPERM, dput(1, DET_KILL, 0, 0, 0));
	EXPECT_EQ(-EPERM, dget(1, 0, 0, 0, 0));
	EXPECT_EQ(-EPERM, dget(1, DET_GET_STATUS | DET_DONT_WAIT, 0, 0, 0));
	EXPECT_EQ(-EPERM, dput(0, DET_ALLOW_SIGNALS, (unsigned long)&set,
			       DET_SIGSET_SIZE, 0));
	EXPECT_EQ(-EPERM, dret());
}

TEST(bad_flags)
{
	static const unsigned long bad_put[] = {
		0x400, 0x8000, 0x01000000UL << 1, 1UL << 40, 1UL << 63,
		DET_MERGE, DET_GET_STATUS | DET_KILL,
		DET_REGS | DET_KILL, DET_KILL | DET_ALLOW_SIGNALS,
		DET_REGS, DET_REGS | 0x80000, DET_REGS | 0x800000,
		DET_KILL | DET_DONT_WAIT << 2, DET_KILL | DET_START,
		DET_ALLOW_SIGNALS | DET_START, DET_BECOME_MASTER | DET_START,
		DET_BECOME_MASTER | 0x10000, DET_START | 0x10000,
		0x10000, DET_VM_ZERO | DET_SNAP, DET_SNAP | DET_VM_COPY,
		DET_PERM | DET_REGS | DET_GENERAL_REGS, DET_SNAP | 0x10000,
		DET_VM_COPY | 0x80000, DET_PERM | 0x80000,
	};
	static const unsigned long bad_get[] = {
		0x200, 1UL << 40, DET_KILL, DET_BECOME_MASTER,
		DET_ALLOW_SIGNALS, DET_VM_ZERO, DET_SNAP,
		DET_REGS | DET_GET_STATUS, DET_REGS, DET_REGS | 0x80000,
		DET_GET_STATUS | 0x20000, DET_GET_STATUS | DET_XSTATE_REGS,
		DET_GET_STATUS | DET_DONT_WAIT << 2, 0x10000,
		DET_MERGE | DET_MERGE_ARGS << 1,
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad_put); i++)
		EXPECT_EQ(-EINVAL, dput(0, bad_put[i], 0, 0, 0)) {
			TH_LOG("dput flags %#lx", bad_put[i]);
		}
	for (i = 0; i < ARRAY_SIZE(bad_get); i++)
		EXPECT_EQ(-EINVAL, dget(0, bad_get[i], 0, 0, 0)) {
			TH_LOG("dget flags %#lx", bad_get[i]);
		}
	/* Same answer from a master. */
	ASSERT_EQ(0, become_master());
	for (i = 0; i < ARRAY_SIZE(bad_put); i++)
		EXPECT_EQ(-EINVAL, dput(0, bad_put[i], 0, 0, 0));
	for (i = 0; i < ARRAY_SIZE(bad_get); i++)
		EXPECT_EQ(-EINVAL, dget(0, bad_get[i], 0, 0, 0));
}

/* Argument checks of the memory operations (step 1: no child needed). */
TEST(memory_op_args)
{
	unsigned long top = 0x7ffffffff000UL;
	static const struct { unsigned long flags, start, size, dst; } bad[] = {
		{ DET_VM_ZERO, 1, 4096, 0 },		/* unaligned start */
		{ DET_VM_ZERO, 4096, 100, 0 },		/* unaligned size */
		{ DET_VM_ZERO, 4096, 4096, 4096 },	/* dststart unused */
		{ DET_PERM, 4096, 4095, 0 },
		{ DET_VM_ZERO, KPTR, 4096, 0 },		/* kernel address */
		{ DET_VM_ZERO, -4096UL, 8192, 0 },	/* wraps */
		{ DET_VM_COPY, 4096, 10, 4097 },	/* offset not a page */
		{ DET_VM_COPY, 4096, 10, KPTR },
		{ DET_VM_COPY, KPTR, 10, KPTR },
		{ DET_SNAP, 4096, 0, 0 },		/* SNAP takes no range */
		{ DET_SNAP, 0, 0, 4096 },
		{ DET_SNAP | DET_REGS | DET_GENERAL_REGS, 0, 8, 0 },
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad); i++)
		EXPECT_EQ(-EINVAL, dput(1, bad[i].flags, bad[i].start,
					bad[i].size, bad[i].dst)) {
			TH_LOG("dput case %u", i);
		}
	EXPECT_EQ(-EINVAL, dput(1, DET_VM_ZERO, top, 8192, 0));
	EXPECT_EQ(-EINVAL, dget(1, DET_MERGE, KPTR, 4096, 0));
	EXPECT_EQ(-EINVAL, dget(1, DET_MERGE, top, 8192, 0));
	EXPECT_EQ(-EINVAL, dget(1, DET_VM_COPY, 4096, 10, 8193));
	/* Valid shapes reach the role check: -EPERM from a legacy caller. */
	EXPECT_EQ(-EPERM, dput(1, DET_VM_ZERO, top - 4096, 4096, 0));
	EXPECT_EQ(-EPERM, dput(1, DET_SNAP | DET_START, 0, 0, 0));
	EXPECT_EQ(-EPERM, dget(1, DET_MERGE, 1, 3, KPTR));
	EXPECT_EQ(-EPERM, dput(1, DET_VM_COPY, 4097, 10, 4097 + 8192));
	ASSERT_EQ(0, become_master());
	/* Child errors: nothing to merge from. */
	EXPECT_EQ(-ESRCH, dget(1, DET_MERGE, 4096, 4096, 0));
	EXPECT_EQ(-ESRCH, dget(1, DET_VM_COPY, 4096, 4096, 4096));
	/* Nothing was created. */
	EXPECT_EQ(-ESRCH, dget(1, 0, 0, 0, 0));
}

TEST(bad_sizes_and_unused_args)
{
	struct det_status st;
	struct user_regs_struct regs;
	static const long bad_xs[] = { -1, 1, -64, 64, -DET_FP_REGS_SIZE };
	unsigned int i;
	sigset_t set;
	void *x;
	long r, xs;

	ASSERT_EQ(0, become_master());
	r = dput(1, 0, 0, 0, 0);
	if (r == 0)
		det_exit(0);
	ASSERT_EQ(DET_S_READY, r);
	sigemptyset(&set);

	EXPECT_EQ(-EINVAL, dget(1, DET_REGS | DET_GENERAL_REGS,
				(unsigned long)&regs, sizeof(regs) - 1, 0));
	EXPECT_EQ(-EINVAL, dget(1, DET_REGS | DET_GENERAL_REGS,
				(unsigned long)&regs, sizeof(regs) + 512, 0));
	EXPECT_EQ(-EINVAL, dget(1, DET_REGS | DET_GENERAL_REGS,
				(unsigned long)&regs, sizeof(regs), 8));
	EXPECT_EQ(-EINVAL, dget(1, DET_GET_STATUS, (unsigned long)&st,
				sizeof(st) - 1, 0));
	EXPECT_EQ(-EINVAL, dget(1, DET_GET_STATUS, (unsigned long)&st,
				sizeof(st) + 8, 0));
	EXPECT_EQ(-EINVAL, dget(1, DET_GET_STATUS, 0, sizeof(st), 0));
	EXPECT_EQ(-EINVAL, dget(1, 0, 8, 0, 0));
	EXPECT_EQ(-EINVAL, dget(1, 0, 0, 8, 0));
	EXPECT_EQ(-EINVAL, dput(1, 0, 0, 0, 8));
	EXPECT_EQ(-EINVAL, dput(1, DET_KILL, 8, 0, 0));
	EXPECT_EQ(-EINVAL, dput(1, DET_KILL, 0, 8, 0));
	EXPECT_EQ(-EINVAL, dput(0, DET_ALLOW_SIGNALS, (unsigned long)&set,
				DET_SIGSET_SIZE * 2, 0));
	EXPECT_EQ(-EINVAL, dput(1, DET_ALLOW_SIGNALS, (unsigned long)&set,
				DET_SIGSET_SIZE, 0));
	EXPECT_EQ(-EINVAL, dput(1, DET_BECOME_MASTER, 0, 0, 0));
	EXPECT_EQ(-EINVAL, dput(0, DET_BECOME_MASTER, 8, 0, 0));

	/* DET_XSTATE_REGS: the size is exact, and only the query asks it. */
	xs = det_xstate_size();
	ASSERT_LT(DET_XSTATE_YMM_OFFSET, xs);
	x = malloc(xs + 4096);
	ASSERT_NE(NULL, x);
	for (i = 0; i < ARRAY_SIZE(bad_xs); i++) {
		EXPECT_EQ(-EINVAL, dget(1, DET_REGS | DET_XSTATE_REGS,
					(unsigned long)x, xs + bad_xs[i], 0));
		EXPECT_EQ(-EINVAL, dput(1, DET_REGS | DET_XSTATE_REGS,
					(unsigned long)x, xs + bad_xs[i], 0));
	}
	EXPECT_EQ(-EINVAL, dget(1, DET_REGS | DET_FP_REGS | DET_XSTATE_REGS,
				(unsigned long)x, xs, 0));
	EXPECT_EQ(-EINVAL, dget(1, DET_REGS | DET_XSTATE_REGS,
				(unsigned long)x, xs, 8));
	EXPECT_EQ(DET_S_READY, dget(1, DET_REGS | DET_XSTATE_REGS,
				    (unsigned long)x, xs, 0));
	EXPECT_EQ(DET_S_READY, dput(1, DET_REGS | DET_XSTATE_REGS,
				    (unsigned long)x, xs, 0));
	/* The size query: child, dststart 0, no DET_START, dget only. */
	EXPECT_EQ(DET_GENERAL_REGS_SIZE, dget(0, DET_REGS | DET_GENERAL_REGS,
					      0, 0, 0));
	EXPECT_EQ(DET_FP_REGS_SIZE + xs, dget(0, DET_REGS | DET_FP_REGS |
					      DET_XSTATE_REGS, 0, 0, 0));
	EXPECT_EQ(-EINVAL, dget(1, DET_REGS | DET_XSTATE_REGS, 0, 0, 0));
	EXPECT_EQ(-EINVAL, dget(0, DET_REGS | DET_XSTATE_REGS, 0, 0, 8));
	EXPECT_EQ(-EINVAL, dget(0, DET_REGS | DET_XSTATE_REGS | DET_START,
				0, 0, 0));
	EXPECT_EQ(-EINVAL, dget(0, DET_REGS, 0, 0, 0));
	EXPECT_EQ(-EINVAL, dput(0, DET_REGS | DET_XSTATE_REGS, 0, 0, 0));
	free(x);
	/* The child is still there and fine. */
	EXPECT_EQ(DET_S_READY, dget(1, DET_GET_STATUS, 0, 0, 0));
}

TEST(bad_pointers)
{
	struct user_regs_struct regs;
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(1, 0, 0, 0, 0);
	if (r == 0)
		det_exit(0);
	ASSERT_EQ(DET_S_READY, r);

	EXPECT_EQ(-EFAULT, dput(1, DET_REGS | DET_GENERAL_REGS, 8,
				sizeof(regs), 0));
	EXPECT_EQ(-EFAULT, dput(1, DET_REGS | DET_GENERAL_REGS, KPTR,
				sizeof(regs), 0));
	EXPECT_EQ(-EFAULT, dput(1, DET_REGS | DET_FP_REGS, KPTR,
				DET_FP_REGS_SIZE, 0));
	EXPECT_EQ(-EFAULT, dget(1, DET_REGS | DET_GENERAL_REGS, 8,
				sizeof(regs), 0));
	EXPECT_EQ(-EFAULT, dget(1, DET_REGS | DET_GENERAL_REGS, KPTR,
				sizeof(regs), 0));
	EXPECT_EQ(-EFAULT, dget(1, DET_REGS | DET_FP_REGS,
				(unsigned long)ro_data, DET_FP_REGS_SIZE, 0));
	EXPECT_EQ(-EFAULT, dput(1, DET_REGS | DET_XSTATE_REGS, 8,
				det_xstate_size(), 0));
	EXPECT_EQ(-EFAULT, dput(1, DET_REGS | DET_XSTATE_REGS, KPTR,
				det_xstate_size(), 0));
	EXPECT_EQ(-EFAULT, dget(1, DET_REGS | DET_XSTATE_REGS, KPTR,
				det_xstate_size(), 0));
	EXPECT_EQ(-EFAULT, dget(1, DET_REGS | DET_XSTATE_REGS,
				(unsigned long)ro_data, det_xstate_size(), 0));
	EXPECT_EQ(-EFAULT, dget(1, DET_GET_STATUS, KPTR,
				sizeof(struct det_status), 0));
	EXPECT_EQ(-EFAULT, dget(1, DET_GET_STATUS, (unsigned long)ro_data,
				sizeof(struct det_status), 0));
	EXPECT_EQ(-EFAULT, dput(0, DET_ALLOW_SIGNALS, 8, DET_SIGSET_SIZE, 0));
	EXPECT_EQ(-EFAULT, dput(0, DET_ALLOW_SIGNALS, KPTR, DET_SIGSET_SIZE,
				0));
	/* Garbage registers are refused, not loaded. */
	ASSERT_EQ(DET_S_READY, dget(1, DET_REGS | DET_GENERAL_REGS,
				    (unsigned long)&regs, sizeof(regs), 0));
	regs.cs = 0x1234;
	EXPECT_GT(0, dput(1, DET_REGS | DET_GENERAL_REGS, (unsigned long)&regs,
			  sizeof(regs), 0));
	EXPECT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
}

TEST(unknown_child)
{
	ASSERT_EQ(0, become_master());
	EXPECT_EQ(-ESRCH, dget(5, 0, 0, 0, 0));
	EXPECT_EQ(-ESRCH, dget(5, DET_GET_STATUS | DET_DONT_WAIT, 0, 0, 0));
	EXPECT_EQ(-ESRCH, dput(5, DET_KILL, 0, 0, 0));
	EXPECT_EQ(-ESRCH, dput(5, DET_KILL | DET_KILL_POISON, 0, 0, 0));
	EXPECT_EQ(-EPERM, dret());
}

static void *thread_fn(void *arg)
{
	return arg;
}

TEST(become_master_with_child)
{
	int status;
	pid_t pid;

	/* A process with a child, even a zombie, cannot become a master. */
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0)
		_exit(0);
	ASSERT_EQ(0, waitid(P_PID, pid, NULL, WEXITED | WNOWAIT));
	EXPECT_EQ(-EBUSY, become_master());
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_EQ(0, become_master());
}

static void *lock_fn(void *arg)
{
	pthread_mutex_lock(arg);
	pthread_mutex_unlock(arg);
	return NULL;
}

TEST(become_master_with_thread)
{
	pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	pthread_t th;

	pthread_mutex_lock(&m);
	ASSERT_EQ(0, pthread_create(&th, NULL, lock_fn, &m));
	EXPECT_EQ(-EBUSY, become_master());
	pthread_mutex_unlock(&m);
	ASSERT_EQ(0, pthread_join(th, NULL));
	/* Thread gone: now it works, once. */
	EXPECT_EQ(0, become_master());
	EXPECT_EQ(0, become_master());	/* stays a master, as in v3.0-det */
}

TEST(master_cannot_fork)
{
	pthread_t th;

	ASSERT_EQ(0, become_master());
	errno = 0;
	EXPECT_EQ(-1, fork());
	EXPECT_EQ(EPERM, errno);
	EXPECT_EQ(-EPERM, det_raw5(__NR_vfork, 0, 0, 0, 0, 0));
	EXPECT_EQ(-EPERM, det_raw5(__NR_clone, SIGCHLD, 0, 0, 0, 0));
	EXPECT_EQ(EPERM, pthread_create(&th, NULL, thread_fn, NULL));
}

/* What a deterministic process may not do, reported in its exit code. */
TEST(deterministic_caller)
{
	struct det_status st;
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(1, DET_START, 0, 0, 0);
	if (r == 0) {
		sigset_t set;
		int bad = 0;

		sigemptyset(&set);
		if (become_master() != -EACCES)
			bad |= 1;
		if (dput(0, DET_ALLOW_SIGNALS, (unsigned long)&set,
			 DET_SIGSET_SIZE, 0) != -EACCES)
			bad |= 2;
		if (dget(1, DET_GET_STATUS | DET_DONT_WAIT, 0, 0, 0) != -EACCES)
			bad |= 4;
		if (dget(1, 0, 0, 0, 0) != -ESRCH)
			bad |= 8;
		if (dput(1, 0, 0, 0, 0x1000) != -EINVAL)
			bad |= 16;
		if (dget(1, DET_MERGE, 0, 0, 0) != -ESRCH)
			bad |= 32;
		/* Ordering: EINVAL (size) before EACCES (role). */
		if (dput(0, DET_ALLOW_SIGNALS, (unsigned long)&set, 1, 0) !=
		    -EINVAL)
			bad |= 64;
		det_exit(bad);
	}
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1, &st));
	EXPECT_EQ(0, st.exit_code);
}

/* Which error wins when several arguments are bad. */
TEST(checks_ordering)
{
	struct user_regs_struct regs;
	struct det_status st;
	long r, xs, all;

	/* Legacy caller: argument errors come before -EPERM. */
	EXPECT_EQ(-EINVAL, dput(1, 0x400, 0, 0, 0));
	EXPECT_EQ(-EINVAL, dget(1, 0, 0, 0, 8));
	EXPECT_EQ(-EPERM, dput(1, DET_SNAP, 0, 0, 0));
	EXPECT_EQ(-EPERM, dput(1, 0, 0, 0, 0));
	/* Unknown bit beats the role. */
	EXPECT_EQ(-EINVAL, dput(1, DET_SNAP | 0x400, 0, 0, 0));
	/* Two operations (other than SNAP with REGS): -EINVAL. */
	EXPECT_EQ(-EINVAL, dget(1, DET_MERGE | DET_REGS | DET_GENERAL_REGS,
				0, 0, 0));
	/* The size query is a call like any other: its shape, then role. */
	EXPECT_EQ(-EINVAL, dget(1, DET_REGS | DET_XSTATE_REGS, 0, 0, 0));
	EXPECT_EQ(-EPERM, dget(0, DET_REGS | DET_XSTATE_REGS, 0, 0, 0));
	EXPECT_EQ(-EINVAL, dput(1, DET_REGS | DET_XSTATE_REGS, KPTR, 1, 0));

	ASSERT_EQ(0, become_master());
	xs = det_xstate_size();
	ASSERT_LT(DET_XSTATE_YMM_OFFSET, xs);
	all = DET_GENERAL_REGS_SIZE + DET_FP_REGS_SIZE + xs;
	/* Argument shape beats the role (a master asking again: 0). */
	EXPECT_EQ(-EINVAL, dput(3, DET_BECOME_MASTER, 0, 0, 0));
	EXPECT_EQ(0, dput(0, DET_BECOME_MASTER, 0, 0, 0));
	/* Bad size beats an unknown child. */
	EXPECT_EQ(-EINVAL, dget(9, DET_GET_STATUS, (unsigned long)&st, 1, 0));
	/* An unknown child beats a bad pointer. */
	EXPECT_EQ(-ESRCH, dget(9, DET_GET_STATUS, KPTR, sizeof(st), 0));
	EXPECT_EQ(-ESRCH, dget(9, DET_REGS | DET_GENERAL_REGS, KPTR,
			       sizeof(regs), 0));
	EXPECT_EQ(-EINVAL, dget(9, DET_REGS | DET_XSTATE_REGS, KPTR, xs - 1,
				0));
	EXPECT_EQ(-ESRCH, dget(9, DET_REGS | DET_XSTATE_REGS, KPTR, xs, 0));
	/* The size query needs no child: it answers before the lookup. */
	EXPECT_EQ(xs, dget(0, DET_REGS | DET_XSTATE_REGS, 0, 0, 0));

	r = dput(1, DET_START, 0, 0, 0);
	if (r == 0)
		det_exit(0);
	ASSERT_EQ(DET_S_EXIT_NORMAL, dget(1, 0, 0, 0, 0));
	/* Bad size beats a dead child; a dead child beats a bad pointer. */
	EXPECT_EQ(-EINVAL, dget(1, DET_REGS | DET_GENERAL_REGS, KPTR, 1, 0));
	EXPECT_EQ(-ECHILD, dget(1, DET_REGS | DET_GENERAL_REGS, KPTR,
				sizeof(regs), 0));
	EXPECT_EQ(-ECHILD, dput(1, DET_REGS | DET_GENERAL_REGS | DET_START,
				KPTR, sizeof(regs), 0));
	EXPECT_EQ(-EINVAL, dget(1, DET_REGS | DET_GENERAL_REGS | DET_FP_REGS |
				DET_XSTATE_REGS, KPTR, all + 1, 0));
	EXPECT_EQ(-ECHILD, dget(1, DET_REGS | DET_GENERAL_REGS | DET_FP_REGS |
				DET_XSTATE_REGS, KPTR, all, 0));
	EXPECT_EQ(-ECHILD, dput(1, DET_REGS | DET_XSTATE_REGS | DET_START,
				KPTR, xs, 0));
	/* A dead child still reports its status. */
	EXPECT_EQ(DET_S_EXIT_NORMAL, dget(1, DET_GET_STATUS, 0, 0, 0));
	EXPECT_EQ(-EFAULT, dget(1, DET_GET_STATUS, KPTR, sizeof(st), 0));
	EXPECT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

TEST_HARNESS_MAIN
