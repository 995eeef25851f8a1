// SPDX-License-Identifier: GPL-2.0
/*
 * Memory pressure: a child killed for memory frees it at once, so one
 * out-of-memory kill costs one child, not the tree; operations on the dead
 * child fail with ECHILD; and DET_VM_COPY of zeros over zeros allocates
 * nothing.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>

#include "det_test.h"

#define PG 4096UL
#define MIB (1024UL * 1024)

static void *map(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/*
 * Bytes on the per-CPU free lists (/proc/zoneinfo's "count:" of each
 * pageset), which MemAvailable does not count until they reach the buddy
 * allocator.  A process that frees 100 MiB at once can leave tens of MiB
 * there.
 */
static size_t pcp_bytes(void)
{
	FILE *f = fopen("/proc/zoneinfo", "r");
	unsigned long pcp = 0, n;
	char line[256];

	if (f) {
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, " count: %lu", &n) == 1)
				pcp += n;
		fclose(f);
	}
	return pcp * PG;
}

/* Free memory, in bytes: MemAvailable and the per-CPU free lists. */
static size_t avail_bytes(void)
{
	return meminfo_kb("MemAvailable") * 1024UL + pcp_bytes();
}

static void touch(volatile char *p, size_t size, char v)
{
	size_t i;

	for (i = 0; i < size; i += PG)
		p[i] = v;
}

/* DET_VM_COPY where both sides read as zeros: no page is allocated. */
TEST(copy_zeros_over_zeros_allocates_nothing)
{
	const size_t size = 64 * MIB;
	char *r = map(size), *back = map(PG);
	long before, r1;

	ASSERT_NE(NULL, r);
	ASSERT_NE(NULL, back);
	ASSERT_EQ(0, become_master());
	r1 = dput(1, 0, 0, 0, 0);
	if (r1 == 0) {
		for (;;)
			dret();
	}
	ASSERT_EQ(DET_S_READY, r1);

	/* Untouched both sides, both directions. */
	before = meminfo_kb("AnonPages");
	ASSERT_EQ(DET_S_READY, dput(1, DET_VM_COPY, (unsigned long)r, size,
				    (unsigned long)r));
	ASSERT_EQ(DET_S_READY, dget(1, DET_VM_COPY, (unsigned long)r, size,
				    (unsigned long)r));
	EXPECT_GT(8 * 1024, meminfo_kb("AnonPages") - before);

	/* The caller's pages populated with zeros: still nothing in the child. */
	memset(r, 0, size / 2);
	before = meminfo_kb("AnonPages");
	ASSERT_EQ(DET_S_READY, dput(1, DET_VM_COPY, (unsigned long)r, size,
				    (unsigned long)r));
	EXPECT_GT(8 * 1024, meminfo_kb("AnonPages") - before);

	/* Data still goes through, and zeros over data overwrite it. */
	r[5 * PG + 3] = 7;
	ASSERT_EQ(DET_S_READY, dput(1, DET_VM_COPY, (unsigned long)r + 5 * PG,
				    PG, (unsigned long)r + 9 * PG));
	ASSERT_EQ(DET_S_READY, dget(1, DET_VM_COPY, (unsigned long)back, PG,
				    (unsigned long)r + 9 * PG));
	EXPECT_EQ(7, back[3]);
	ASSERT_EQ(DET_S_READY, dput(1, DET_VM_COPY, (unsigned long)r, PG,
				    (unsigned long)r + 9 * PG));
	ASSERT_EQ(DET_S_READY, dget(1, DET_VM_COPY, (unsigned long)back, PG,
				    (unsigned long)r + 9 * PG));
	EXPECT_EQ(0, back[3]);
	EXPECT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

/*
 * Two children each fill two thirds of what is left of memory; the second
 * child's fill cannot be served.  The tree loses that child, and only it:
 * the OOM killer would take the bigger, the first child whose work is
 * done (or, without the first fix, the master too), but for a
 * deterministic process whose allocation fails it takes that process.
 * Its memory comes back at once, the first child's is intact, and the
 * master sees a clear status.
 */
TEST(oom_kill_costs_one_child)
{
	struct det_merge rep;
	struct det_status st;
	size_t avail, chunk, pcp;
	long mem_kb;
	char *a, *b, *buf;
	int fd, adj;
	long r;

	/* Should anything go wrong, this tree goes first, not the harness. */
	adj = open("/proc/self/oom_score_adj", O_WRONLY);
	ASSERT_LE(0, adj);
	ASSERT_EQ(4, write(adj, "1000", 4));
	close(adj);

	/* Leave ~256 MiB: the rest goes to unswappable shmem nobody maps. */
	avail = meminfo_kb("MemAvailable") * 1024UL;
	ASSERT_LT(512 * MIB, avail);
	fd = memfd_create("filler", 0);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fallocate(fd, 0, 0, avail - 256 * MIB));
	avail = avail_bytes();
	chunk = (avail * 2 / 3) & ~(PG - 1);	/* page multiples for copies */
	TH_LOG("Free %zu MiB, each child writes %zu MiB",
	       avail / MIB, chunk / MIB);
	a = map(chunk);
	b = map(chunk);
	buf = map(PG);
	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, b);
	ASSERT_NE(NULL, buf);

	ASSERT_EQ(0, become_master());
	r = dput(1, DET_SNAP | DET_START, 0, 0, 0);
	if (r == 0) {
		touch(a, chunk, 1);
		for (;;)
			dret();
	}
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	r = dput(2, DET_SNAP | DET_START, 0, 0, 0);
	if (r == 0) {
		touch(b, chunk, 2);
		for (;;)
			dret();
	}

	/* The second child, which could not be served, died of SIGKILL. */
	ASSERT_EQ(DET_S_EXCEPT_DEAD, dget(2, 0, 0, 0, 0));
	ASSERT_EQ(DET_S_EXCEPT_DEAD, det_status(2, &st));
	EXPECT_EQ(DET_R_KILLED, st.reason);
	EXPECT_EQ(SIGKILL, st.signo);

	/*
	 * Its memory is back already: only the first child's is in use,
	 * with its page tables and write log (a node per 64 pages it
	 * wrote), and what KASAN's quarantine still holds of the dead
	 * child's: a few MiB against the 100+ MiB it had written.  Its
	 * pages may still sit on the per-CPU free lists (pcp_bytes()).
	 */
	mem_kb = meminfo_kb("MemAvailable");
	pcp = pcp_bytes();
	EXPECT_LT(avail - chunk - 64 * MIB, mem_kb * 1024UL + pcp) {
		TH_LOG("MemAvailable %ld KiB, per-CPU lists %zu KiB", mem_kb,
		       pcp / 1024);
	}

	/* The first child's work is intact. */
	ASSERT_EQ(DET_S_READY, det_status(1, &st));
	ASSERT_EQ(DET_S_READY, dget(1, DET_VM_COPY, (unsigned long)buf, PG,
				    (unsigned long)a + chunk - PG));
	EXPECT_EQ(1, buf[0]);

	/* Operations on the dead child fail cleanly. */
	EXPECT_EQ(-ECHILD, dget(2, DET_VM_COPY, (unsigned long)buf, PG,
				(unsigned long)b));
	EXPECT_EQ(-ECHILD, dget(2, DET_MERGE, (unsigned long)b, chunk,
				(unsigned long)&rep));
	EXPECT_EQ(-ECHILD, dput(2, DET_VM_COPY, (unsigned long)buf, PG,
				(unsigned long)b));
	EXPECT_EQ(-ECHILD, dput(2, DET_START, 0, 0, 0));
	EXPECT_EQ(0, dput(2, DET_KILL, 0, 0, 0));
	EXPECT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
	close(fd);
}

TEST_HARNESS_MAIN
