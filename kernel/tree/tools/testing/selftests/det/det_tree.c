// SPDX-License-Identifier: GPL-2.0
/*
 * Nesting: a deterministic process never outlives its parent and is never
 * reparented.  Killing a master in the middle of a deep, wide tree, a
 * deterministic parent exiting, and DET_KILL of an inner node all take the
 * whole subtree, with nothing left in /proc.
 */
#include <sys/wait.h>

#include "det_test.h"

/*
 * The tree's shape: tree_fanout children per node, tree_depth levels below
 * the master, of which all but one child per node spin.  8 x 6 (328 processes)
 * on the test kernel; on KASAN, where each process costs ~10 times more,
 * 4 x 4 (52 processes) still has stopped inner nodes at every level,
 * running leaves and more than one level of nesting to tear down, which
 * is what a missed subtree or a reparented node needs to show.
 */
static int tree_fanout = 8;
static int tree_depth = 6;		/* levels below the master */
#define TREE_SIZE (tree_fanout + tree_fanout * tree_fanout * (tree_depth - 1))
#define MAX_PROCS 4096

static void __attribute__((noreturn)) spin(void)
{
	for (;;)
		;
}

/*
 * A node at depth @d: tree_fanout children; child 0 grows the tree
 * further, the others spin.  The node drets once its subtree is complete,
 * then stays stopped.
 */
static void __attribute__((noreturn)) build(int d)
{
	long i, r;

	if (d == tree_depth)
		spin();
	for (i = 0; i < tree_fanout; i++) {
		r = dput(i, DET_START, 0, 0, 0);
		if (r == 0) {
			if (i == 0)
				build(d + 1);
			spin();
		}
		if (r != DET_S_RUNNING)
			det_exit(1);
	}
	if (d + 1 < tree_depth && dget(0, 0, 0, 0, 0) != DET_S_READY)
		det_exit(2);
	dret();
	spin();
}

struct procs {
	int n;
	pid_t pid[MAX_PROCS];
	pid_t ppid[MAX_PROCS];
};

static void snapshot(struct procs *p)
{
	DIR *dir = opendir("/proc");

	p->n = 0;
	while (dir && p->n < MAX_PROCS &&
	       proc_next(dir, &p->pid[p->n], &p->ppid[p->n]))
		p->n++;
	if (dir)
		closedir(dir);
}

/* Descendants of @root in @p, into @out; returns the count and depth. */
static int descendants(const struct procs *p, pid_t root, pid_t *out,
		       int *depth)
{
	int n = 0, lvl_start = 0, lvl_end, i, j;

	out[n++] = root;
	*depth = 0;
	for (;;) {
		lvl_end = n;
		for (i = lvl_start; i < lvl_end; i++)
			for (j = 0; j < p->n; j++)
				if (p->ppid[j] == out[i] && n < MAX_PROCS)
					out[n++] = p->pid[j];
		if (n == lvl_end)
			break;
		lvl_start = lvl_end;
		(*depth)++;
	}
	return n - 1;
}

static int count_alive(const pid_t *pids, int n)
{
	int i, alive = 0;

	for (i = 0; i < n; i++) {
		char path[64];

		snprintf(path, sizeof(path), "/proc/%d", pids[i]);
		alive += access(path, F_OK) == 0;
	}
	return alive;
}

static struct procs snap;
static pid_t tree[MAX_PROCS];

SLOW_TEST(master_killed_mid_tree, 300)
{
	int ready[2], status, n, depth, i;
	double t0, t_kill;
	pid_t m;
	char c;

	if (det_kernel_has_kasan()) {
		tree_fanout = 4;
		tree_depth = 4;
	}
	ASSERT_EQ(0, pipe(ready));
	m = fork();
	ASSERT_LE(0, m);
	if (m == 0) {
		long r;

		if (become_master())
			_exit(1);
		for (i = 0; i < tree_fanout; i++) {
			r = dput(i, DET_START, 0, 0, 0);
			if (r == 0)
				build(1);
			if (r != DET_S_RUNNING)
				_exit(2);
		}
		for (i = 0; i < tree_fanout; i++)
			if (dget(i, 0, 0, 0, 0) != DET_S_READY)
				_exit(3);
		if (write(ready[1], "r", 1) != 1)
			_exit(4);
		/* In the middle of its work: wait on a stopped node forever. */
		for (;;)
			pause();
	}
	ASSERT_EQ(1, read(ready[0], &c, 1));
	snapshot(&snap);
	n = descendants(&snap, m, tree, &depth);
	printf("# tree below the master: %d processes, depth %d, fan-out %d\n",
	       n, depth, tree_fanout);
	ASSERT_EQ(TREE_SIZE, n);
	ASSERT_EQ(tree_depth, depth);

	t0 = now_us();
	ASSERT_EQ(0, kill(m, SIGKILL));
	ASSERT_EQ(m, waitpid(m, &status, 0));
	t_kill = now_us() - t0;
	printf("# master + %d-process tree killed and reaped in %.0f us (%.1f us per process)\n",
	       n, t_kill, t_kill / (n + 1));
	ASSERT_TRUE(WIFSIGNALED(status));
	/* Nothing left, nothing reparented. */
	EXPECT_EQ(0, count_alive(tree + 1, n));
	snapshot(&snap);
	for (i = 0; i < snap.n; i++)
		EXPECT_NE(m, snap.ppid[i]);
}

/* A deterministic parent that exits takes its children with it. */
TEST(det_parent_exit_takes_subtree)
{
	struct det_status st;
	pid_t kids[4], grand[16];
	int nk, ng;
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(1, DET_START, 0, 0, 0);
	if (r == 0) {
		long i;

		for (i = 0; i < 8; i++) {
			r = dput(i, i & 1 ? DET_START : 0, 0, 0, 0);
			if (r == 0)
				spin();
		}
		dret();
		det_exit(5);
	}
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	nk = children_of(getpid(), kids, 4);
	ASSERT_EQ(1, nk);
	ng = children_of(kids[0], grand, 16);
	ASSERT_EQ(8, ng);
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1, &st));
	EXPECT_EQ(5, st.exit_code);
	/* By the time the exit is reported, the whole subtree is gone. */
	EXPECT_EQ(0, count_alive(grand, ng));
	EXPECT_EQ(0, count_alive(kids, nk));
	EXPECT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

/* DET_KILL of an inner node: its subtree goes, its siblings stay. */
TEST(kill_inner_node)
{
	pid_t kids[4], grand[16];
	double t0;
	int nk, ng;
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(1, DET_START, 0, 0, 0);
	if (r == 0) {
		long i;

		for (i = 0; i < 8; i++) {
			r = dput(i, DET_START, 0, 0, 0);
			if (r == 0)
				spin();
		}
		dret();
		spin();
	}
	r = dput(2, 0, 0, 0, 0);
	if (r == 0)
		det_exit(0);
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	nk = children_of(getpid(), kids, 4);
	ASSERT_EQ(2, nk);
	ng = children_of(kids[0], grand, 16) + children_of(kids[1], grand, 16);
	ASSERT_EQ(8, ng);
	ng = children_of(kids[0], grand, 16);
	if (ng == 0)
		ng = children_of(kids[1], grand, 16);
	t0 = now_us();
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
	printf("# DET_KILL of a node with 8 running children: %.0f us\n",
	       now_us() - t0);
	EXPECT_EQ(0, count_alive(grand, ng));
	EXPECT_EQ(1, count_children_of(getpid()));
	EXPECT_EQ(DET_S_READY, dget(2, 0, 0, 0, 0));
}

TEST_HARNESS_MAIN
