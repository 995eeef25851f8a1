// SPDX-License-Identifier: GPL-2.0
/*
 * DET_GET_TIMES: a master reads the time its group spent in memory
 * operations, by kind; a deterministic process never can.
 */
#include <sys/mman.h>

#include "det_test.h"

#define PG 4096UL

static long get_times(struct det_times *t)
{
	memset(t, 0xa5, sizeof(*t));
	return dget(0, DET_GET_TIMES, (unsigned long)t, sizeof(*t), 0);
}

TEST(fresh_master_reads_zeros)
{
	struct det_times t;

	ASSERT_EQ(0, become_master());
	ASSERT_EQ(0, get_times(&t));
	EXPECT_EQ(0, t.snap_ns);
	EXPECT_EQ(0, t.merge_ns);
	EXPECT_EQ(0, t.copy_ns);
	EXPECT_EQ(0, t.kill_ns);
	EXPECT_EQ(0, t.calls);
}

/*
 * Every kind is counted, for the master's own calls and for a child's
 * calls on a grandchild, and the count of calls is exact.
 */
TEST(each_kind_counted_for_the_whole_group)
{
	static char buf[4 * PG] __attribute__((aligned(4096)));
	struct det_status st;
	struct det_times t;
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(1, DET_SNAP | DET_START, 0, 0, 0);		/* 1: snap */
	if (r == 0) {
		/* The child: a grandchild that writes, merged and killed. */
		if (dput(1, DET_SNAP | DET_START, 0, 0, 0) == 0) { /* 2 */
			buf[0] = 1;
			det_exit(0);
		}
		if (dget(1, DET_MERGE, (unsigned long)buf, sizeof(buf),
			 0) != DET_S_EXIT_NORMAL)			/* 3 */
			det_exit(1);
		if (dput(1, DET_KILL, 0, 0, 0) != 0)			/* 4 */
			det_exit(2);
		buf[PG] = buf[0] + 1;
		det_exit(0);
	}
	ASSERT_EQ(DET_S_RUNNING, r);
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1, &st));
	ASSERT_EQ(0, st.exit_code);
	ASSERT_EQ(DET_S_EXIT_NORMAL,
		  dget(1, DET_MERGE, (unsigned long)buf, sizeof(buf), 0)); /* 5 */
	EXPECT_EQ(2, buf[PG]);
	ASSERT_EQ(DET_S_EXIT_NORMAL,
		  dget(1, DET_VM_COPY, (unsigned long)buf, PG,
		       (unsigned long)buf));			/* 6: copy */
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));		/* 7: kill */
	ASSERT_EQ(0, get_times(&t));
	EXPECT_GT(t.snap_ns, 0);
	EXPECT_GT(t.merge_ns, 0);
	EXPECT_GT(t.copy_ns, 0);
	EXPECT_GT(t.kill_ns, 0);
	EXPECT_EQ(7, t.calls);
	TH_LOG("snap %llu merge %llu copy %llu kill %llu ns",
	       (unsigned long long)t.snap_ns, (unsigned long long)t.merge_ns,
	       (unsigned long long)t.copy_ns, (unsigned long long)t.kill_ns);
}

/* Waits and status queries are not memory operations. */
TEST(waits_are_not_counted)
{
	struct det_status st;
	struct det_times t;
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(1, 0, 0, 0, 0);				/* creation */
	ASSERT_EQ(DET_S_READY, r);
	ASSERT_EQ(DET_S_READY, det_status(1, &st));
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	ASSERT_EQ(0, get_times(&t));
	EXPECT_EQ(1, t.calls);
	EXPECT_GT(t.snap_ns, 0);
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

/* A deterministic process cannot read a clock this way. */
TEST(deterministic_process_is_refused)
{
	struct det_status st;
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(1, DET_SNAP | DET_START, 0, 0, 0);
	if (r == 0) {
		struct det_times t;

		det_exit(get_times(&t) == -EACCES ? 0 : 1);
	}
	ASSERT_EQ(DET_S_RUNNING, r);
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1, &st));
	EXPECT_EQ(0, st.exit_code);
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

TEST(bad_arguments)
{
	struct det_times t;

	/* A legacy process is not in any group. */
	EXPECT_EQ(-EPERM, get_times(&t));
	ASSERT_EQ(0, become_master());
	EXPECT_EQ(-EINVAL, dget(0, DET_GET_TIMES, (unsigned long)&t,
				sizeof(t) - 8, 0));
	EXPECT_EQ(-EINVAL, dget(1, DET_GET_TIMES, (unsigned long)&t,
				sizeof(t), 0));
	EXPECT_EQ(-EINVAL, dget(0, DET_GET_TIMES, 0, sizeof(t), 0));
	EXPECT_EQ(-EINVAL, dget(0, DET_GET_TIMES, (unsigned long)&t,
				sizeof(t), 1));
	EXPECT_EQ(-EINVAL, dget(0, DET_GET_TIMES | DET_START,
				(unsigned long)&t, sizeof(t), 0));
	EXPECT_EQ(-EINVAL, dput(0, DET_GET_TIMES, (unsigned long)&t,
				sizeof(t), 0));
	EXPECT_EQ(-EFAULT, dget(0, DET_GET_TIMES, 8, sizeof(t), 0));
}

TEST_HARNESS_MAIN
