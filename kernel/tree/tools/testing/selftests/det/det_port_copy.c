// SPDX-License-Identifier: GPL-2.0
/*
 * Port of a v3.0-det DET_VM_COPY test program (libdeterm's user/copy.c
 * behaviour, our own code): a parent fills a range with unaligned ends and
 * copies it into a child, at the same address and a page multiple away;
 * the child checks it and scribbles on its copy, which the parent must not
 * see; a range of alternately writable and read-only pages is copied with
 * awkward edges.  What changed for detlinux (docs/kernel.md, "Porting from
 * v3.0-det"): the child's destination must be mapped (DET_VM_ZERO first),
 * the child reports through its memory instead of printing, and the final
 * status is read with DET_GET_STATUS before DET_KILL.
 */
#include <sys/mman.h>

#include "det_test.h"

#define PG 4096UL
#define RW (DET_PROT_READ | DET_PROT_WRITE)
/* Room for the largest layout below: the round trip's range, 16 pages away. */
#define ROOM (4UL << 20)

/*
 * Where this test's fixed mappings go: a range reserved here, so that no
 * MAP_FIXED below can land on anything else this process has (its heap,
 * whose start is randomized over a gigabyte for a static program).
 * Returns a page-aligned address with a page free below it.
 */
static unsigned long reserve_base(void)
{
	void *p = mmap(NULL, ROOM, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? 0 : (unsigned long)p + PG;
}

static volatile long verdict;	/* the child's findings, read by DET_VM_COPY */

static int all(const unsigned char *p, unsigned char v, unsigned long n)
{
	unsigned long i;

	for (i = 0; i < n; i++)
		if (p[i] != v)
			return 0;
	return 1;
}

/* Read the child's verdict: the caller's address first, as in v3.0-det. */
static long child_verdict(unsigned long id)
{
	long v = -1;

	if (det_read_child(id, &verdict, &v, sizeof(v)) < 0)
		return -2;
	return v;
}

/* The parent's status check before DET_KILL, which returns 0 here. */
static long kill_ready(unsigned long id)
{
	long st = dput(id, DET_GET_STATUS, 0, 0, 0);

	return dput(id, DET_KILL, 0, 0, 0) ?: st;
}

static void copy_roundtrip(struct __test_metadata *_metadata,
			   unsigned long base, unsigned long off)
{
	unsigned char *addr = (unsigned char *)(base - 100);
	unsigned long len = (1UL << 20) + 200;
	/* Whole pages around [addr, addr + len): DET_VM_ZERO takes pages. */
	unsigned long map = base - PG;
	unsigned long map_len = (((unsigned long)addr + len + PG - 1) &
				 ~(PG - 1)) - map;
	unsigned char *caddr = addr + off;
	long r;

	ASSERT_EQ((void *)map, mmap((void *)map, map_len,
				    PROT_READ | PROT_WRITE,
				    MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS,
				    -1, 0));
	r = dput(1, 0, 0, 0, 0);
	if (r == 0) {
		verdict = all(caddr, 0xab, len);
		memset(caddr, 0x12, len);
		dret();
		verdict = all(caddr, 0xab, len) ? 2 : 0;
		dret();
		det_exit(0);
	}
	ASSERT_EQ(DET_S_READY, r);
	memset(addr, 0xab, len);
	/* v3.0-det's copy mapped the destination; here it must be mapped. */
	ASSERT_EQ(DET_S_READY, dput(1, DET_VM_ZERO | RW, map + off, map_len,
				    0));
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_VM_COPY | DET_START | RW,
				      (unsigned long)addr, len,
				      (unsigned long)caddr));
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	EXPECT_EQ(1, child_verdict(1));
	EXPECT_TRUE(all(addr, 0xab, len));	/* not shared */
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_VM_COPY | DET_START | RW,
				      (unsigned long)addr, len,
				      (unsigned long)caddr));
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	EXPECT_EQ(2, child_verdict(1));
	EXPECT_EQ(DET_S_READY, kill_ready(1));
	ASSERT_EQ(0, munmap((void *)map, map_len));
}

TEST(copy_same_address)
{
	unsigned long base = reserve_base();

	ASSERT_NE(0, base);
	ASSERT_EQ(0, become_master());
	copy_roundtrip(_metadata, base, 0);
}

TEST(copy_page_multiple_away)
{
	unsigned long base = reserve_base();

	ASSERT_NE(0, base);
	ASSERT_EQ(0, become_master());
	copy_roundtrip(_metadata, base, 16 * PG);
}

/*
 * Alternate pages: odd ones read-only and never written (zeros), even ones
 * writable and filled with their address's low byte.  Copied with edges
 * @loff before and @roff after, the child sees exactly that.
 */
TEST(copy_awkward_mappings)
{
	static const unsigned long edges[][2] = {
		{ 0, 0 }, { 1, 0 }, { 0, 1 }, { 99, 77 }, { PG - 1, PG - 1 },
	};
	const unsigned long n = 64, base = reserve_base();
	unsigned long e, i;
	long r;

	ASSERT_NE(0, base);
	ASSERT_EQ(0, become_master());
	for (i = 0; i < n; i++) {
		unsigned long a = base + i * PG;

		ASSERT_EQ((void *)a, mmap((void *)a, PG,
					  PROT_READ | (i % 2 ? 0 : PROT_WRITE),
					  MAP_FIXED | MAP_PRIVATE |
					  MAP_ANONYMOUS, -1, 0));
		if (i % 2 == 0)
			memset((void *)a, (unsigned char)a, PG);
	}
	/* Mapped edges for the unaligned ends. */
	ASSERT_NE(MAP_FAILED, mmap((void *)(base - PG), PG,
				   PROT_READ | PROT_WRITE,
				   MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS,
				   -1, 0));
	ASSERT_NE(MAP_FAILED, mmap((void *)(base + n * PG), PG,
				   PROT_READ | PROT_WRITE,
				   MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS,
				   -1, 0));
	for (e = 0; e < ARRAY_SIZE(edges); e++) {
		unsigned long lo = edges[e][0], ro = edges[e][1];

		r = dput(e + 1, 0, 0, 0, 0);
		if (r == 0) {
			long ok = 1;

			for (i = 0; i < n; i++) {
				unsigned char *p = (void *)(base + i * PG);

				ok &= all(p, i % 2 ? 0 : (unsigned char)
					  (unsigned long)p, PG);
			}
			verdict = ok;
			dret();
			det_exit(0);
		}
		ASSERT_EQ(DET_S_READY, r);
		ASSERT_EQ(DET_S_RUNNING, dput(e + 1, DET_VM_COPY | DET_START |
					      RW, base - lo, n * PG + lo + ro,
					      base - lo));
		ASSERT_EQ(DET_S_READY, dget(e + 1, 0, 0, 0, 0));
		EXPECT_EQ(1, child_verdict(e + 1)) {
			TH_LOG("edges %lu/%lu", lo, ro);
		}
		EXPECT_EQ(DET_S_READY, kill_ready(e + 1));
	}
}

TEST_HARNESS_MAIN
