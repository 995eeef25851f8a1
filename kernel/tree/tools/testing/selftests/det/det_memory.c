// SPDX-License-Identifier: GPL-2.0
/*
 * Memory operations: DET_VM_ZERO, DET_PERM, DET_VM_COPY, DET_SNAP and
 * DET_MERGE, byte-exact, with their errors; merge conflicts and the
 * report; nesting, many children, a 256 MiB range, transparent huge pages,
 * file mappings, mappings changed between snapshot and merge, and a
 * randomized test against a model of the merge.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/user.h>

#include "det_test.h"

#define PG 4096UL
#define KPTR 0xffff888000000000UL

static void *map(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* @huge bytes of fresh memory aligned to @huge (a huge page size). */
static unsigned char *map_huge_aligned(unsigned long huge)
{
	unsigned char *raw = map(3 * huge);

	if (!raw)
		return NULL;
	return (unsigned char *)(((unsigned long)raw + huge - 1) &
				 ~(huge - 1));
}

static long merge(unsigned long id, void *start, size_t size,
		  struct det_merge *rep)
{
	memset(rep, 0xa5, sizeof(*rep));
	return dget(id, DET_MERGE, (unsigned long)start, size,
		    (unsigned long)rep);
}

/* Snapshot child @id and run it: returns 0 in the child. */
static long fork_snap(unsigned long id)
{
	return dput(id, DET_SNAP | DET_START, 0, 0, 0);
}

static int g_global = 1;	/* .data */
static char g_bss[3 * 4096];	/* .bss */

TEST(zero_maps_fresh_pages)
{
	struct det_status st;
	char *buf = map(4 * PG);
	long r;

	ASSERT_NE(NULL, buf);
	memset(buf, 0x77, 4 * PG);
	ASSERT_EQ(0, become_master());
	r = dput(1, 0, 0, 0, 0);
	if (r == 0) {
		int bad = 0;
		unsigned long i;

		/* Pages 1-2 were zeroed (RW), the others keep 0x77. */
		for (i = 0; i < 4 * PG; i++)
			if (buf[i] != ((i >= PG && i < 3 * PG) ? 0 : 0x77))
				bad = 1;
		buf[PG] = 5;
		dret();
		/* Page 3 was unmapped: this faults. */
		buf[3 * PG] = 1;
		det_exit(bad ? 1 : 2);
	}
	ASSERT_EQ(DET_S_READY, r);
	ASSERT_EQ(DET_S_READY, dput(1, DET_VM_ZERO | DET_PROT_READ |
				    DET_PROT_WRITE, (unsigned long)buf + PG,
				    2 * PG, 0));
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, det_status(1, &st));
	EXPECT_EQ(DET_R_DRET, st.reason);
	ASSERT_EQ(DET_S_READY, dput(1, DET_VM_ZERO, (unsigned long)buf + 3 * PG,
				    PG, 0));
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_EXCEPT, det_status(1, &st));
	EXPECT_EQ(DET_R_SIGNAL, st.reason);
	EXPECT_EQ(SIGSEGV, st.signo);
	EXPECT_EQ((unsigned long)buf + 3 * PG, st.addr);
	/* The parent's own pages are untouched. */
	EXPECT_EQ(0x77, buf[PG]);
	EXPECT_EQ(0x77, buf[3 * PG]);
}

TEST(zero_read_only_and_perm)
{
	struct det_status st;
	char *buf = map(2 * PG);
	long r;

	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, become_master());
	r = dput(1, 0, 0, 0, 0);
	if (r == 0) {
		/* Read-only zero page: reading works, writing faults. */
		if (buf[10] != 0)
			det_exit(1);
		buf[10] = 1;
		dret();
		buf[PG + 1] = 3;	/* writable again after DET_PERM */
		dret();
		det_exit(0);
	}
	ASSERT_EQ(DET_S_READY, dput(1, DET_VM_ZERO | DET_PROT_READ,
				    (unsigned long)buf, 2 * PG, 0));
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_EXCEPT, det_status(1, &st));
	EXPECT_EQ(SIGSEGV, st.signo);
	EXPECT_EQ((unsigned long)buf + 10, st.addr);
	/* Let it write: skip the faulting store by making it writable. */
	ASSERT_EQ(DET_S_EXCEPT, dput(1, DET_PERM | DET_PROT_READ |
				     DET_PROT_WRITE, (unsigned long)buf,
				     2 * PG, 0));
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, det_status(1, &st));
	EXPECT_EQ(DET_R_DRET, st.reason);
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, det_status(1, &st));
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1, &st));
	EXPECT_EQ(0, st.exit_code);
	/* DET_PERM over a hole: -ENOMEM, like mprotect(). */
	ASSERT_EQ(0, munmap(buf + PG, PG));
	r = dput(2, DET_PERM | DET_PROT_READ, (unsigned long)buf, 2 * PG, 0);
	EXPECT_EQ(-ENOMEM, r);
}

TEST(copy_unaligned_both_ways)
{
	char *src = map(8 * PG), *back = map(8 * PG);
	unsigned long s, d, n, i;
	long r;

	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, back);
	for (i = 0; i < 8 * PG; i++)
		src[i] = (char)(i * 7 + 3);
	memset(back, 0x11, 8 * PG);
	ASSERT_EQ(0, become_master());
	r = dput(1, 0, 0, 0, 0);
	if (r == 0) {
		/* The child's view of [src+2PG+100, +n) is what it was. */
		for (;;)
			dret();
	}
	/* Put [src+100, +2*PG+50) at src+2*PG+100 in the child. */
	s = (unsigned long)src + 100;
	d = s + 2 * PG;
	n = 2 * PG + 50;
	ASSERT_EQ(DET_S_READY, dput(1, DET_VM_COPY, s, n, d));
	/* Read the child's [src+PG, +6*PG) back into back[PG..]. */
	ASSERT_EQ(DET_S_READY, dget(1, DET_VM_COPY, (unsigned long)back + PG,
				    6 * PG, (unsigned long)src + PG));
	for (i = PG; i < 7 * PG; i++) {
		unsigned long a = (unsigned long)src + i;
		char want = (a >= d && a < d + n) ? src[a - 2 * PG -
							 (unsigned long)src] :
						      src[i];

		if (back[i] != want) {
			TH_LOG("byte %lu: %d != %d", i, back[i], want);
			ASSERT_EQ(want, back[i]);
		}
	}
	/* Outside the destination range nothing was written. */
	for (i = 0; i < PG; i++)
		ASSERT_EQ(0x11, back[i]);
	for (i = 7 * PG; i < 8 * PG; i++)
		ASSERT_EQ(0x11, back[i]);
	/* Unaligned 1-byte copies at page edges. */
	src[PG - 1] = 'x';
	ASSERT_EQ(DET_S_READY, dput(1, DET_VM_COPY, (unsigned long)src + PG - 1,
				    1, (unsigned long)src + 5 * PG - 1));
	ASSERT_EQ(DET_S_READY, dget(1, DET_VM_COPY,
				    (unsigned long)back + 7 * PG - 1, 2,
				    (unsigned long)src + 5 * PG - 1));
	EXPECT_EQ('x', back[7 * PG - 1]);
	EXPECT_EQ(src[5 * PG], back[7 * PG]);
	/* The offset must be a multiple of the page size. */
	EXPECT_EQ(-EINVAL, dget(1, DET_VM_COPY, (unsigned long)src, 2,
				(unsigned long)back + 1));
	/* Writes into the child's read-only pages go through (like ptrace). */
	ASSERT_EQ(DET_S_READY, dput(1, DET_PERM | DET_PROT_READ,
				    (unsigned long)src, 8 * PG, 0));
	ASSERT_EQ(DET_S_READY, dput(1, DET_VM_COPY, (unsigned long)back, 16,
				    (unsigned long)src));
	/* Errors: unmapped source or destination, in either direction. */
	EXPECT_EQ(-EFAULT, dput(1, DET_VM_COPY, 4096, 16, (unsigned long)src));
	EXPECT_EQ(-EFAULT, dget(1, DET_VM_COPY, (unsigned long)back, 16, 4096));
	EXPECT_EQ(-EFAULT, dget(1, DET_VM_COPY, 4096, 16, (unsigned long)src));
	ASSERT_EQ(DET_S_READY, dput(1, DET_VM_ZERO, (unsigned long)src + PG,
				    PG, 0));
	EXPECT_EQ(-EFAULT, dput(1, DET_VM_COPY, (unsigned long)back, 16,
				(unsigned long)src + PG));
	/* Size 0 is a no-op. */
	EXPECT_EQ(DET_S_READY, dget(1, DET_VM_COPY, 4096, 0, 8192));
}

/* A child that writes @n bytes at @off[i] of @buf, then dret()s. */
TEST(snap_merge_byte_exact)
{
	unsigned char *buf = map(4 * PG);
	struct det_merge rep;
	unsigned long i;
	long r;

	ASSERT_NE(NULL, buf);
	for (i = 0; i < 4 * PG; i++)
		buf[i] = (unsigned char)i;
	ASSERT_EQ(0, become_master());
	r = fork_snap(1);
	if (r == 0) {
		buf[0] = 0xaa;			/* first byte of the range */
		buf[PG - 1] = 0xab;		/* page edge */
		buf[PG] = 0xac;
		buf[2 * PG + 17] = 0xad;	/* page only the child wrote */
		buf[3 * PG + 5] = 99;		/* same value as the parent */
		buf[3 * PG + 6] = (unsigned char)(3 * PG + 6); /* unchanged */
		g_global = 42;
		g_bss[4095] = 7;
		dret();
		det_exit(0);
	}
	ASSERT_EQ(DET_S_RUNNING, r);
	/* The parent changes page 3 too: the byte merge must combine. */
	buf[3 * PG + 5] = 99;
	buf[3 * PG + 100] = 1;
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, merge(1, buf, 4 * PG, &rep));
	EXPECT_EQ(0, rep.conflict_bytes);
	EXPECT_EQ(0, rep.conflict_addr);
	EXPECT_EQ(4, rep.scanned_pages);
	EXPECT_EQ(3, rep.copied_pages);		/* pages 0, 1, 2 */
	EXPECT_EQ(1, rep.compared_pages);	/* page 3 */
	for (i = 0; i < 4 * PG; i++) {
		unsigned char want = (unsigned char)i;

		if (i == 0)
			want = 0xaa;
		else if (i == PG - 1)
			want = 0xab;
		else if (i == PG)
			want = 0xac;
		else if (i == 2 * PG + 17)
			want = 0xad;
		else if (i == 3 * PG + 5)
			want = 99;
		else if (i == 3 * PG + 100)
			want = 1;
		ASSERT_EQ(want, buf[i]) TH_LOG("byte %lu", i);
	}
	/* .data and .bss merge like any range. */
	EXPECT_EQ(1, g_global);
	ASSERT_EQ(DET_S_READY, merge(1, &g_global, sizeof(g_global), &rep));
	EXPECT_EQ(42, g_global);
	ASSERT_EQ(DET_S_READY, merge(1, g_bss, sizeof(g_bss), &rep));
	EXPECT_EQ(7, g_bss[4095]);
	/* Merging again changes nothing: the parent now has the bytes. */
	ASSERT_EQ(DET_S_READY, merge(1, buf, 4 * PG, &rep));
	EXPECT_EQ(0, rep.conflict_bytes);
}

TEST(merge_unaligned_range)
{
	unsigned char *buf = map(2 * PG);
	struct det_merge rep;
	long r;

	ASSERT_NE(NULL, buf);
	memset(buf, 1, 2 * PG);
	ASSERT_EQ(0, become_master());
	r = fork_snap(1);
	if (r == 0) {
		memset(buf, 2, 2 * PG);
		dret();
	}
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	/* Only [PG-3, PG+2) is merged. */
	ASSERT_EQ(DET_S_READY, merge(1, buf + PG - 3, 5, &rep));
	EXPECT_EQ(2, rep.scanned_pages);
	EXPECT_EQ(1, buf[PG - 4]);
	EXPECT_EQ(2, buf[PG - 3]);
	EXPECT_EQ(2, buf[PG + 1]);
	EXPECT_EQ(1, buf[PG + 2]);
	/* Size 0: nothing. */
	ASSERT_EQ(DET_S_READY, merge(1, buf, 0, &rep));
	EXPECT_EQ(0, rep.scanned_pages);
	EXPECT_EQ(1, buf[0]);
}

TEST(merge_conflict_reported_nothing_merged)
{
	unsigned char *buf = map(8 * PG);
	struct det_merge rep;
	struct det_status st;
	long r;

	ASSERT_NE(NULL, buf);
	memset(buf, 0, 8 * PG);
	ASSERT_EQ(0, become_master());
	r = fork_snap(3);
	if (r == 0) {
		buf[10] = 1;			/* child-only change */
		buf[2 * PG + 123] = 5;		/* conflict */
		buf[2 * PG + 124] = 6;		/* conflict */
		buf[2 * PG + 125] = 7;		/* same value both: fine */
		buf[5 * PG + 4095] = 9;		/* conflict, last byte */
		dret();
		det_exit(0);
	}
	buf[2 * PG + 123] = 50;
	buf[2 * PG + 124] = 60;
	buf[2 * PG + 125] = 7;
	buf[5 * PG + 4095] = 90;
	buf[6 * PG] = 3;			/* parent-only change */
	ASSERT_EQ(DET_S_READY, dget(3, 0, 0, 0, 0));
	r = merge(3, buf, 8 * PG, &rep);
	ASSERT_EQ(-DET_E_CONFLICT, r);
	EXPECT_EQ(3, rep.conflict_bytes);
	EXPECT_EQ((unsigned long)buf + 2 * PG + 123, rep.conflict_addr);
	EXPECT_EQ((unsigned long)buf + 2 * PG, rep.conflict_start);
	EXPECT_EQ((unsigned long)buf + 6 * PG, rep.conflict_end);
	EXPECT_EQ(2, rep.conflict_pages);
	/* Nothing was merged, not even the child-only byte. */
	EXPECT_EQ(0, buf[10]);
	EXPECT_EQ(50, buf[2 * PG + 123]);
	/* The child is as it was: stopped, and still mergeable elsewhere. */
	ASSERT_EQ(DET_S_READY, det_status(3, &st));
	EXPECT_EQ(DET_R_DRET, st.reason);
	ASSERT_EQ(DET_S_READY, merge(3, buf, PG, &rep));
	EXPECT_EQ(1, buf[10]);
	/* Without a report pointer the errno alone tells. */
	EXPECT_EQ(-DET_E_CONFLICT, dget(3, DET_MERGE, (unsigned long)buf,
					8 * PG, 0));
	/* A bad report pointer: -EFAULT. */
	EXPECT_EQ(-EFAULT, dget(3, DET_MERGE, (unsigned long)buf, PG, KPTR));
	ASSERT_EQ(0, dput(3, DET_KILL, 0, 0, 0));
}

TEST(merge_errors)
{
	unsigned char *buf = map(4 * PG);
	struct det_merge rep;
	long r;

	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, become_master());
	/* A child without a snapshot: -ENODATA. */
	r = dput(1, 0, 0, 0, 0);
	if (r == 0)
		det_exit(0);
	EXPECT_EQ(-ENODATA, merge(1, buf, PG, &rep));
	/* Bytes the child changed where the caller has no mapping now. */
	r = fork_snap(2);
	if (r == 0) {
		buf[3 * PG] = 1;
		buf[0] = 4;
		dret();
	}
	ASSERT_EQ(DET_S_READY, dget(2, 0, 0, 0, 0));
	ASSERT_EQ(0, munmap(buf + 3 * PG, PG));
	EXPECT_EQ(-EFAULT, merge(2, buf, 4 * PG, &rep));
	EXPECT_EQ(0, buf[0]);	/* found in the first pass: nothing merged */
	/* The parent's new mapping where the child has none: skipped. */
	ASSERT_EQ(buf + 3 * PG, mmap(buf + 3 * PG, PG, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
				     -1, 0));
	ASSERT_EQ(0, munmap(buf + 2 * PG, PG));	/* and a hole */
	r = fork_snap(4);
	if (r == 0) {
		buf[0] = 8;
		dret();
	}
	ASSERT_EQ(DET_S_READY, dget(4, 0, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, dput(4, DET_VM_ZERO, (unsigned long)buf + 3 * PG,
				    PG, 0));
	ASSERT_EQ(DET_S_READY, merge(4, buf, 4 * PG, &rep));
	EXPECT_EQ(8, buf[0]);
	EXPECT_EQ(1, rep.copied_pages);
}

/* dget(id, DET_MERGE | DET_MERGE_ARGS) of @nr ranges; report of @rsize. */
static long merge_ranges(unsigned long id, const struct det_range *r,
			 unsigned long nr, void *rep, size_t rsize)
{
	struct det_merge_args args = {
		.ranges = (unsigned long)r, .nr_ranges = nr,
		.report = (unsigned long)rep, .report_size = rep ? rsize : 0,
	};

	if (rep)
		memset(rep, 0xa5, rsize);
	return dget(id, DET_MERGE | DET_MERGE_ARGS, (unsigned long)&args,
		    sizeof(args), 0);
}

/*
 * Several ranges in one call are one merge: a conflict in the last range
 * leaves the first unmerged too; without it, all are merged and the
 * report counts over all of them.
 */
TEST(merge_ranges_all_or_nothing)
{
	unsigned char *buf = map(8 * PG);
	struct det_range r[3];
	struct det_merge rep;
	long ret;

	ASSERT_NE(NULL, buf);
	memset(buf, 0, 8 * PG);
	r[0] = (struct det_range){ (unsigned long)buf + 10, PG - 10 };
	r[1] = (struct det_range){ (unsigned long)buf + 3 * PG, 2 * PG };
	r[2] = (struct det_range){ (unsigned long)buf + 6 * PG, PG };
	ASSERT_EQ(0, become_master());
	ret = fork_snap(1);
	if (ret == 0) {
		buf[20] = 1;			/* range 0 */
		buf[5] = 2;			/* outside every range */
		buf[4 * PG + 1] = 3;		/* range 1 */
		buf[6 * PG + 7] = 4;		/* range 2: conflict */
		buf[7 * PG] = 5;		/* outside */
		dret();
		det_exit(0);
	}
	buf[6 * PG + 7] = 40;
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	ASSERT_EQ(-DET_E_CONFLICT, merge_ranges(1, r, 3, &rep, sizeof(rep)));
	EXPECT_EQ(1, rep.conflict_bytes);
	EXPECT_EQ((unsigned long)buf + 6 * PG + 7, rep.conflict_addr);
	EXPECT_EQ(0, buf[20]);		/* nothing merged, not range 0 */
	EXPECT_EQ(0, buf[4 * PG + 1]);

	buf[6 * PG + 7] = 0;		/* no conflict any more */
	ASSERT_EQ(DET_S_READY, merge_ranges(1, r, 3, &rep, sizeof(rep)));
	EXPECT_EQ(1, buf[20]);
	EXPECT_EQ(3, buf[4 * PG + 1]);
	EXPECT_EQ(4, buf[6 * PG + 7]);
	EXPECT_EQ(0, buf[5]);		/* outside: left alone */
	EXPECT_EQ(0, buf[7 * PG]);
	EXPECT_EQ(0, rep.conflict_bytes);
	EXPECT_EQ(3, rep.scanned_pages);	/* the pages the child wrote */
	EXPECT_EQ(3, rep.copied_pages);
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

/*
 * struct det_merge_args and the report are sized: an older, smaller
 * report gets a prefix, a newer, larger one zeros past the kernel's;
 * arguments the kernel cannot honour fail before anything is merged.
 */
TEST(merge_ranges_sizes_and_errors)
{
	unsigned char *buf = map(4 * PG);
	struct det_range r[2], one;
	unsigned long big[DET_MERGE_SIZE / 8 + 4];
	struct det_merge_args args;
	unsigned char bigargs[64];
	struct det_merge rep;
	long ret;
	int i;

	ASSERT_NE(NULL, buf);
	memset(buf, 0, 4 * PG);
	one = (struct det_range){ (unsigned long)buf, 4 * PG };
	ASSERT_EQ(0, become_master());
	ret = fork_snap(1);
	if (ret == 0) {
		buf[0] = 1;
		buf[PG] = 2;
		dret();
		det_exit(0);
	}
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));

	/* Arguments wrong in themselves: EINVAL, E2BIG, EFAULT. */
	args = (struct det_merge_args){ (unsigned long)&one, 1, 0, 0 };
	EXPECT_EQ(-EINVAL, dget(1, DET_MERGE | DET_MERGE_ARGS,
				(unsigned long)&args, 16, 0));
	EXPECT_EQ(-EINVAL, dget(1, DET_MERGE | DET_MERGE_ARGS,
				(unsigned long)&args, sizeof(args),
				(unsigned long)&rep));
	EXPECT_EQ(-EINVAL, merge_ranges(1, &one, 0, NULL, 0));
	EXPECT_EQ(-EINVAL, merge_ranges(1, &one, DET_MERGE_MAX_RANGES + 1,
					NULL, 0));
	args.report = (unsigned long)&rep;	/* a report with no size */
	EXPECT_EQ(-EINVAL, dget(1, DET_MERGE | DET_MERGE_ARGS,
				(unsigned long)&args, sizeof(args), 0));
	r[0] = (struct det_range){ (unsigned long)buf + PG, PG };
	r[1] = (struct det_range){ (unsigned long)buf, PG };
	EXPECT_EQ(-EINVAL, merge_ranges(1, r, 2, NULL, 0));	/* order */
	r[0] = (struct det_range){ (unsigned long)buf, 10 };
	r[1] = (struct det_range){ (unsigned long)buf + 20, 10 };
	EXPECT_EQ(-EINVAL, merge_ranges(1, r, 2, NULL, 0));	/* a page */
	r[1] = (struct det_range){ KPTR, PG };
	EXPECT_EQ(-EINVAL, merge_ranges(1, r, 2, NULL, 0));	/* kernel */
	EXPECT_EQ(-EFAULT, merge_ranges(1, (void *)KPTR, 1, NULL, 0));
	memset(bigargs, 0, sizeof(bigargs));
	memcpy(bigargs, &(struct det_merge_args){ (unsigned long)&one, 1,
						  0, 0 }, sizeof(args));
	bigargs[40] = 1;		/* a field this kernel does not know */
	EXPECT_EQ(-E2BIG, dget(1, DET_MERGE | DET_MERGE_ARGS,
			       (unsigned long)bigargs, sizeof(bigargs), 0));
	EXPECT_EQ(0, buf[0]);	/* nothing was merged by any of these */

	/* A larger args struct with zeros past ours is taken. */
	bigargs[40] = 0;
	ASSERT_EQ(DET_S_READY, dget(1, DET_MERGE | DET_MERGE_ARGS,
				    (unsigned long)bigargs, sizeof(bigargs),
				    0));
	EXPECT_EQ(1, buf[0]);
	EXPECT_EQ(2, buf[PG]);

	/* Reports of other sizes: a prefix, or the whole and zeros. */
	memset(buf, 0, 4 * PG);
	memset(big, 0xa5, sizeof(big));
	ASSERT_EQ(DET_S_READY, merge_ranges(1, &one, 1, big, 16));
	EXPECT_EQ(0, big[0]);			/* conflict_bytes */
	EXPECT_EQ(0, big[1]);			/* conflict_addr */
	EXPECT_EQ(0xa5a5a5a5a5a5a5a5UL, big[2]);	/* not written */
	memset(buf, 0, 4 * PG);
	ASSERT_EQ(DET_S_READY, merge_ranges(1, &one, 1, big, sizeof(big)));
	EXPECT_EQ(2, big[5]);			/* scanned_pages: written */
	EXPECT_EQ(2, big[6]);			/* copied_pages */
	for (i = DET_MERGE_SIZE / 8; i < (int)(sizeof(big) / 8); i++)
		EXPECT_EQ(0, big[i]);
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

TEST(merge_after_exit)
{
	unsigned char *buf = map(PG), *out = map(PG);
	struct det_merge rep;
	struct det_status st;
	long r;

	ASSERT_NE(NULL, buf);
	ASSERT_NE(NULL, out);
	ASSERT_EQ(0, become_master());
	r = fork_snap(1);
	if (r == 0) {
		buf[5] = 5;
		det_exit(3);
	}
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1, &st));
	EXPECT_EQ(3, st.exit_code);
	ASSERT_EQ(DET_S_EXIT_NORMAL, merge(1, buf, PG, &rep));
	EXPECT_EQ(5, buf[5]);
	/* Reading works after exit too; changing the child does not. */
	ASSERT_EQ(DET_S_EXIT_NORMAL, dget(1, DET_VM_COPY, (unsigned long)out,
					  8, (unsigned long)buf));
	EXPECT_EQ(5, out[5]);
	EXPECT_EQ(-ECHILD, dput(1, DET_VM_ZERO, (unsigned long)buf, PG, 0));
	EXPECT_EQ(-ECHILD, dput(1, DET_SNAP, 0, 0, 0));
	EXPECT_EQ(-ECHILD, dput(1, DET_VM_COPY, (unsigned long)buf, 8,
				(unsigned long)buf));
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

/* Snapshot/merge nested three levels deep: each level adds its byte. */
static long nest(unsigned char *buf, int level)
{
	struct det_merge rep;
	long r;

	buf[level] = (unsigned char)(10 + level);
	if (level == 3)
		return 0;
	r = fork_snap(1);
	if (r == 0) {
		r = nest(buf, level + 1);
		if (r)
			det_exit(100 + level);
		dret();
		det_exit(0);
	}
	if (r != DET_S_RUNNING || dget(1, 0, 0, 0, 0) != DET_S_READY)
		return -1;
	r = merge(1, buf, PG, &rep);
	if (r != DET_S_READY)
		return r;
	return dput(1, DET_KILL, 0, 0, 0);
}

TEST(nested_three_levels)
{
	unsigned char *buf = map(PG);
	int i;

	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, become_master());
	ASSERT_EQ(0, nest(buf, 0));
	for (i = 0; i <= 3; i++)
		EXPECT_EQ(10 + i, buf[i]);
}

/* 64 children each fill a disjoint, unaligned slice of one array. */
TEST(sixty_four_children_disjoint)
{
	const unsigned long n = 64, slice = 1000;	/* bytes, unaligned */
	unsigned char *arr = map(n * slice + PG);
	struct det_merge rep;
	unsigned long c, i;
	long r;

	ASSERT_NE(NULL, arr);
	ASSERT_EQ(0, become_master());
	for (c = 0; c < n; c++) {
		r = fork_snap(100 + c);
		if (r == 0) {
			for (i = 0; i < slice; i++)
				arr[c * slice + i] = (unsigned char)(c + 1);
			dret();
		}
		ASSERT_EQ(DET_S_RUNNING, r);
	}
	for (c = 0; c < n; c++) {
		ASSERT_EQ(DET_S_READY, dget(100 + c, 0, 0, 0, 0));
		/* Neighbours share pages: later merges compare bytes. */
		ASSERT_EQ(DET_S_READY, merge(100 + c, arr, n * slice, &rep))
			TH_LOG("child %lu: %llu conflicting bytes at %#llx", c,
			       (unsigned long long)rep.conflict_bytes,
			       (unsigned long long)rep.conflict_addr);
		ASSERT_EQ(0, dput(100 + c, DET_KILL, 0, 0, 0));
	}
	for (i = 0; i < n * slice; i++)
		ASSERT_EQ(i / slice + 1, arr[i]) TH_LOG("byte %lu", i);
	EXPECT_EQ(0, arr[n * slice]);
}

/*
 * A 256 MiB range: sparse writes; untouched pages are not even looked at
 * (the child's write log names the 257 it wrote).
 */
SLOW_TEST(range_256_mib, 120)
{
	const unsigned long size = 256UL << 20;
	unsigned char *buf = map(size);
	struct det_merge rep;
	unsigned long i;
	long r;

	ASSERT_NE(NULL, buf);
	/* Populate every 16th page so the page tables are real. */
	for (i = 0; i < size; i += 16 * PG)
		buf[i] = 1;
	ASSERT_EQ(0, become_master());
	r = fork_snap(1);
	/*
	 * Every write changes its byte (1..255 over zeros: none is 0), so
	 * the 256 pages a MiB apart plus the last one are 257 changed pages
	 * by content.  (Writing i >> 20 wrote 0 over 0 at page 0, and
	 * (i >> 20) + 1 as a byte 0 over 0 at 255 MiB: no change, since
	 * merge reports count by content.)
	 */
	if (r == 0) {
		for (i = 0; i < size; i += 1UL << 20)
			buf[i + 7] = (unsigned char)((i >> 20) % 255 + 1);
		buf[size - 1] = 0xee;
		dret();
	}
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, merge(1, buf, size, &rep));
	EXPECT_EQ(257, rep.scanned_pages);
	EXPECT_EQ(257, rep.copied_pages);
	EXPECT_EQ(0, rep.compared_pages);
	for (i = 0; i < size; i += 1UL << 20)
		ASSERT_EQ((unsigned char)((i >> 20) % 255 + 1), buf[i + 7]);
	EXPECT_EQ(0xee, buf[size - 1]);
	EXPECT_EQ(1, buf[16 * PG]);
}

/* Transparent huge pages on both sides of a merge. */
TEST(transparent_huge_pages)
{
	const unsigned long huge = 2UL << 20;
	unsigned char *raw = map(3 * huge), *buf;
	struct det_merge rep;
	unsigned long i;
	long r;

	ASSERT_NE(NULL, raw);
	buf = (unsigned char *)(((unsigned long)raw + huge - 1) & ~(huge - 1));
	madvise(buf, 2 * huge, MADV_HUGEPAGE);
	memset(buf, 3, 2 * huge);
	ASSERT_EQ(0, become_master());
	r = fork_snap(1);
	if (r == 0) {
		buf[1] = 4;			/* inside a huge page */
		buf[huge + PG + 9] = 5;
		buf[2 * huge - 1] = 6;
		dret();
	}
	buf[huge + 2 * PG] = 7;			/* the parent, same huge page */
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	/* An unaligned range cutting through both huge pages. */
	ASSERT_EQ(DET_S_READY, merge(1, buf + 1, 2 * huge - 2, &rep));
	EXPECT_EQ(4, buf[1]);
	EXPECT_EQ(5, buf[huge + PG + 9]);
	EXPECT_EQ(3, buf[2 * huge - 1]);	/* outside the range */
	EXPECT_EQ(7, buf[huge + 2 * PG]);
	for (i = 2; i < huge; i += PG / 2)
		ASSERT_EQ(3, buf[i]);
	ASSERT_EQ(DET_S_READY, merge(1, buf, 2 * huge, &rep));
	EXPECT_EQ(6, buf[2 * huge - 1]);
}

/*
 * The child's first write into never-populated memory may bring in a whole
 * zeroed huge page: only the page it wrote is a change.
 */
TEST(fresh_memory_only_written_pages)
{
	const unsigned long huge = 2UL << 20;
	unsigned char *buf = map_huge_aligned(huge);
	struct det_merge rep;
	long r;

	ASSERT_NE(NULL, buf);
	madvise(buf, huge, MADV_HUGEPAGE);
	ASSERT_EQ(0, become_master());
	r = fork_snap(1);
	if (r == 0) {
		buf[PG + 3] = 9;
		buf[5 * PG] = 0;	/* a zero written is no change */
		dret();
	}
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, merge(1, buf, huge, &rep));
	EXPECT_EQ(2, rep.scanned_pages);	/* the two written */
	EXPECT_EQ(1, rep.copied_pages);
	EXPECT_EQ(9, buf[PG + 3]);
	EXPECT_EQ(0, buf[0]);
}

/*
 * The report counts by content, not by page identity: the caller's range
 * collapsed into a huge page after the snapshot (as khugepaged may do at
 * any time) changes no byte, so the one page the child wrote is still
 * "copied", not "compared"; a page the child rewrote with the same bytes
 * is no change at all.
 */
TEST(merge_counts_by_content)
{
	const unsigned long huge = 2UL << 20;
	unsigned char *buf = map_huge_aligned(huge);
	struct det_merge rep;
	long r;

	ASSERT_NE(NULL, buf);
	madvise(buf, huge, MADV_NOHUGEPAGE);
	memset(buf, 1, huge);
	ASSERT_EQ(0, become_master());
	r = fork_snap(1);
	if (r == 0) {
		buf[3 * PG + 5] = 2;
		buf[7 * PG] = 1;	/* same byte again: no change */
		dret();
	}
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	madvise(buf, huge, MADV_HUGEPAGE);
	if (madvise(buf, huge, 25 /* MADV_COLLAPSE */))
		TH_LOG("MADV_COLLAPSE: %s; counts by page only", strerror(errno));
	ASSERT_EQ(DET_S_READY, merge(1, buf, huge, &rep));
	EXPECT_EQ(2, rep.scanned_pages);	/* the two written */
	EXPECT_EQ(1, rep.copied_pages);
	EXPECT_EQ(0, rep.compared_pages);
	EXPECT_EQ(2, buf[3 * PG + 5]);
	EXPECT_EQ(1, buf[3 * PG + 4]);
}

/*
 * Into a deterministic caller, a page its logged child wrote counts as
 * the child's whether or not its bytes changed (det-merge.7): the child
 * rewrites a byte of pages 0 and 2 with the same value and changes one of
 * page 1; the caller, a deterministic child of the master, changed page
 * 0 too.  Page 0 counts as compared, pages 1 and 2 as copied, and every
 * byte is the one its last writer left.  A master's merge of the same
 * writes counts by content (merge_counts_by_content).
 */
TEST(deterministic_caller_counts_the_pages_the_child_wrote)
{
	unsigned char *buf = map(4 * PG);
	struct det_merge rep, *got;
	long r;

	ASSERT_NE(NULL, buf);
	memset(buf, 1, 3 * PG);
	got = (struct det_merge *)(buf + 3 * PG);
	ASSERT_EQ(0, become_master());
	r = fork_snap(1);
	if (r == 0) {
		r = fork_snap(1);
		if (r == 0) {
			buf[5] = 1;
			buf[PG + 5] = 7;
			buf[2 * PG + 5] = 1;
			dret();
			det_exit(0);
		}
		buf[9] = 3;
		if (r != DET_S_RUNNING || dget(1, 0, 0, 0, 0) != DET_S_READY ||
		    merge(1, buf, 3 * PG, got) != DET_S_READY)
			det_exit(1);
		dret();
		det_exit(0);
	}
	ASSERT_EQ(DET_S_RUNNING, r);
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, merge(1, buf, 4 * PG, &rep));
	EXPECT_EQ(0, got->conflict_bytes);
	EXPECT_EQ(3, got->scanned_pages);
	EXPECT_EQ(1, got->compared_pages);
	EXPECT_EQ(2, got->copied_pages);
	EXPECT_EQ(3, buf[9]);
	EXPECT_EQ(1, buf[5]);
	EXPECT_EQ(7, buf[PG + 5]);
	EXPECT_EQ(1, buf[2 * PG + 5]);
	EXPECT_EQ(1, buf[2 * PG + 6]);
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

/*
 * A merge that fails, fails whole (issue 13, item 11a).  The range holds
 * four anonymous pages the child rewrote, then a page the caller maps
 * from a shared file past its end, where the child has a page of its own
 * (its parent zero-mapped it there) and wrote a byte.  The caller cannot
 * take that page (a write there is SIGBUS), and it comes last: the merge
 * must fail (EFAULT) without writing the four pages before it.  Once the
 * file is long enough, the same merge goes through.
 */
TEST(merge_failure_writes_nothing)
{
	unsigned char *a, *s;
	struct det_merge rep;
	unsigned long i;
	int fd;
	long r;

	fd = memfd_create("det_merge_fail", 0);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, PG));
	a = mmap(NULL, 6 * PG, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, a);
	s = mmap(a + 4 * PG, 2 * PG, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED, fd, 0);
	ASSERT_EQ(a + 4 * PG, s);
	memset(a, 1, 4 * PG);
	ASSERT_EQ(0, become_master());
	r = fork_snap(1);
	if (r == 0) {
		memset(a, 2, 4 * PG);
		dret();
		s[PG + 10] = 'c';
		dret();
	}
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, dput(1, DET_VM_ZERO | DET_PROT_READ |
				    DET_PROT_WRITE, (unsigned long)s + PG, PG,
				    0));
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));

	EXPECT_EQ(-EFAULT, merge(1, a, 6 * PG, &rep));
	for (i = 0; i < 4 * PG && a[i] == 1; i++)
		;
	EXPECT_EQ(4 * PG, i) {
		TH_LOG("byte %lu of the caller's pages is %u: half merged",
		       i, a[i]);
	}

	ASSERT_EQ(0, ftruncate(fd, 2 * PG));
	ASSERT_EQ(DET_S_READY, merge(1, a, 6 * PG, &rep));
	EXPECT_EQ(5, rep.copied_pages);
	EXPECT_EQ(2, a[0]);
	EXPECT_EQ(2, a[4 * PG - 1]);
	EXPECT_EQ('c', s[PG + 10]);
	EXPECT_EQ(0, s[PG + 11]);
	close(fd);
}

/*
 * The snapshot's bytes survive the parent writing a page first: the child's
 * first write to it since the snapshot, later, is still a change of its
 * own, merged byte by byte with the parent's.
 */
TEST(child_writes_after_the_parent)
{
	unsigned char *buf = map(2 * PG);
	struct det_merge rep;
	long r;

	ASSERT_NE(NULL, buf);
	memset(buf, 1, 2 * PG);
	ASSERT_EQ(0, become_master());
	r = dput(1, DET_SNAP, 0, 0, 0);
	if (r == 0) {
		buf[10] = 3;
		buf[PG + 10] = 3;
		dret();
		det_exit(0);
	}
	ASSERT_EQ(DET_S_READY, r);
	buf[20] = 2;			/* before the child ever runs */
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, merge(1, buf, 2 * PG, &rep));
	EXPECT_EQ(0, rep.conflict_bytes);
	EXPECT_EQ(1, rep.compared_pages);
	EXPECT_EQ(1, rep.copied_pages);
	EXPECT_EQ(3, buf[10]);
	EXPECT_EQ(2, buf[20]);
	EXPECT_EQ(1, buf[11]);
	EXPECT_EQ(3, buf[PG + 10]);
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

/*
 * Is the page at @p mapped by this process alone?  Bit 56 of its entry in
 * /proc/self/pagemap, open at @fd; -1 if unreadable.
 */
static int exclusive(int fd, const void *p)
{
	unsigned long long e;
	off_t at = (unsigned long)p / PG * sizeof(e);

	if (pread(fd, &e, sizeof(e), at) != sizeof(e))
		return -1;
	return !!(e & (1ULL << 56));
}

/*
 * A page only the child changed comes over shared with the child, as
 * fork() shares a page, not copied: mapped by both while the child lives,
 * yet each side's later writes stay its own (the child's first, through
 * whatever its TLB still held from before the merge), and after the kill
 * the page is the caller's alone.
 */
TEST(merged_page_shared_until_written)
{
	int pm = open("/proc/self/pagemap", O_RDONLY);
	unsigned char *buf = map(3 * PG), seen[2];
	struct det_merge rep;
	long r;

	ASSERT_LE(0, pm);
	ASSERT_NE(NULL, buf);
	memset(buf, 1, 3 * PG);
	ASSERT_EQ(0, become_master());
	r = dput(1, DET_SNAP, 0, 0, 0);
	if (r == 0) {
		memset(buf, 3, PG);
		dret();
		buf[0] = 4;
		dret();
		buf[2 * PG] = buf[1];	/* its own 3, not the caller's 2 */
		dret();
		det_exit(0);
	}
	ASSERT_EQ(DET_S_READY, r);
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	ASSERT_EQ(0, exclusive(pm, buf + PG));	/* still the snapshot's */
	ASSERT_EQ(DET_S_READY, merge(1, buf, PG, &rep));
	EXPECT_EQ(1, rep.copied_pages);
	EXPECT_EQ(3, buf[0]);
	EXPECT_EQ(3, buf[PG - 1]);
	EXPECT_EQ(0, exclusive(pm, buf));	/* the child maps it too */

	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	EXPECT_EQ(3, buf[0]);			/* not the child's 4 */
	EXPECT_EQ(1, exclusive(pm, buf));	/* the child took a copy */
	buf[1] = 2;
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, det_read_child(1, buf, seen, 2));
	EXPECT_EQ(4, seen[0]);
	EXPECT_EQ(3, seen[1]);
	ASSERT_EQ(DET_S_READY, det_read_child(1, buf + 2 * PG, seen, 1));
	EXPECT_EQ(3, seen[0]);

	/* Merged again and the child gone: the caller's page alone. */
	ASSERT_EQ(DET_S_READY, merge(1, buf + 2 * PG, PG, &rep));
	EXPECT_EQ(0, exclusive(pm, buf + 2 * PG));
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
	EXPECT_EQ(3, buf[2 * PG]);
	EXPECT_EQ(1, exclusive(pm, buf + 2 * PG));
	buf[2 * PG + 1] = 5;
	EXPECT_EQ(5, buf[2 * PG + 1]);
	EXPECT_EQ(1, buf[2 * PG + 2]);
	close(pm);
}

/*
 * DET_SNAP_EXCEPT: the child's copy reads zeros in the range left out,
 * and the caller's pages there are its alone from the snapshot on (no
 * copy when it writes them).  A child's byte there merges against zeros:
 * over a byte the caller has at zero it arrives, over one the caller
 * holds it is a conflict.  The rest of the copy is a snapshot as ever.
 */
TEST(snap_except_leaves_a_range_out)
{
	int pm = open("/proc/self/pagemap", O_RDONLY);
	unsigned char *buf = map(6 * PG);
	struct det_status st;
	struct det_range ex;
	struct det_merge rep;
	long r, i;

	ASSERT_LE(0, pm);
	ASSERT_NE(NULL, buf);
	for (i = 0; i < 6 * PG; i++)
		buf[i] = (unsigned char)(i / PG + 1);
	buf[2 * PG + 7] = 0;
	ex = (struct det_range){ (unsigned long)buf + PG, 3 * PG };
	ASSERT_EQ(0, become_master());
	r = dput(1, DET_SNAP | DET_SNAP_EXCEPT, 0, 0, (unsigned long)&ex);
	if (r == 0) {
		long bad = 0;

		for (i = 0; i < 6 * PG; i++)
			if (buf[i] != (i >= PG && i < 4 * PG ? 0 :
				       (unsigned char)(i / PG + 1)))
				bad++;
		buf[0] = 0x55;			/* outside: as ever */
		buf[2 * PG + 7] = 0x77;		/* the caller's byte is 0 */
		dret();
		buf[3 * PG + 9] = 0x99;		/* the caller's byte is 4 */
		dret();
		det_exit(bad > 255 ? 255 : bad);
	}
	ASSERT_EQ(DET_S_READY, r);
	/* Before the child runs: only the range left out is ours alone. */
	EXPECT_EQ(0, exclusive(pm, buf));
	for (i = 1; i < 4; i++)
		EXPECT_EQ(1, exclusive(pm, buf + i * PG)) TH_LOG("page %ld", i);
	EXPECT_EQ(0, exclusive(pm, buf + 4 * PG));
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	buf[PG + 1] = 9;			/* the caller's own, as before */
	buf[5 * PG + 1] = 9;
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, merge(1, buf, 6 * PG, &rep));
	EXPECT_EQ(0, rep.conflict_bytes);
	EXPECT_EQ(0x55, buf[0]);
	EXPECT_EQ(0x77, buf[2 * PG + 7]);
	EXPECT_EQ(9, buf[PG + 1]);
	EXPECT_EQ(2, buf[PG + 2]);
	EXPECT_EQ(9, buf[5 * PG + 1]);
	EXPECT_EQ(4, buf[3 * PG + 9]);

	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	EXPECT_EQ(-EBADE, merge(1, buf, 6 * PG, &rep));
	EXPECT_EQ((unsigned long)buf + 3 * PG + 9, rep.conflict_addr);
	EXPECT_EQ(4, buf[3 * PG + 9]);
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1, &st));
	EXPECT_EQ(0, st.exit_code);	/* the child read the zeros */
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
	close(pm);
}

/*
 * DET_SNAP_EXCEPT's arguments: a range at @dststart exactly when the
 * op-flag is given, page-aligned, in user space, over private anonymous
 * memory or nothing; a bad one creates no child and changes none.
 */
TEST(snap_except_errors)
{
	unsigned char *buf = map(4 * PG);
	unsigned char *shared = mmap(NULL, PG, PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int fd = open("/proc/self/exe", O_RDONLY);
	unsigned char *file = mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 0);
	struct det_status st;
	struct det_range ex;
	unsigned long e = (unsigned long)&ex;
	long r;

	ASSERT_NE(NULL, buf);
	ASSERT_NE(MAP_FAILED, shared);
	ASSERT_NE(MAP_FAILED, file);
	ASSERT_EQ(0, become_master());
	ex = (struct det_range){ (unsigned long)buf, PG };
	EXPECT_EQ(-EINVAL, dput(1, DET_SNAP, 0, 0, e));
	EXPECT_EQ(-EINVAL, dput(1, DET_SNAP | DET_SNAP_EXCEPT, 0, 0, 0));
	EXPECT_EQ(-EINVAL, dput(1, DET_SNAP | DET_SNAP_EXCEPT, e, 0, e));
	EXPECT_EQ(-EINVAL, dput(1, DET_VM_ZERO | DET_SNAP_EXCEPT,
				(unsigned long)buf, PG, e));
	EXPECT_EQ(-EINVAL, dput(1, DET_SNAP | DET_REGS | DET_SNAP_EXCEPT,
				e, 0, e));	/* no register set */
	EXPECT_EQ(-EINVAL, dput(1, DET_REGS | DET_GENERAL_REGS |
				DET_SNAP_EXCEPT, e, 0, e));
	EXPECT_EQ(-EFAULT, dput(1, DET_SNAP | DET_SNAP_EXCEPT, 0, 0, 8));
	ex = (struct det_range){ (unsigned long)buf + 1, PG };
	EXPECT_EQ(-EINVAL, dput(1, DET_SNAP | DET_SNAP_EXCEPT, 0, 0, e));
	ex = (struct det_range){ (unsigned long)buf, PG + 1 };
	EXPECT_EQ(-EINVAL, dput(1, DET_SNAP | DET_SNAP_EXCEPT, 0, 0, e));
	ex = (struct det_range){ KPTR, PG };
	EXPECT_EQ(-EINVAL, dput(1, DET_SNAP | DET_SNAP_EXCEPT, 0, 0, e));
	ex = (struct det_range){ -PG, 2 * PG };
	EXPECT_EQ(-EINVAL, dput(1, DET_SNAP | DET_SNAP_EXCEPT, 0, 0, e));
	ex = (struct det_range){ (unsigned long)shared, PG };
	EXPECT_EQ(-EINVAL, dput(1, DET_SNAP | DET_SNAP_EXCEPT, 0, 0, e));
	ex = (struct det_range){ (unsigned long)file, PG };
	EXPECT_EQ(-EINVAL, dput(1, DET_SNAP | DET_SNAP_EXCEPT, 0, 0, e));
	EXPECT_EQ(-ESRCH, det_status(1, &st));	/* never created */

	/* A hole, and nothing at all, are fine. */
	ASSERT_EQ(0, munmap(buf + 3 * PG, PG));
	buf[2 * PG] = 6;
	ex = (struct det_range){ (unsigned long)buf + 2 * PG, 2 * PG };
	r = dput(1, DET_SNAP | DET_SNAP_EXCEPT | DET_START, 0, 0, e);
	if (r == 0)
		det_exit(buf[2 * PG] + buf[0]);
	ASSERT_EQ(DET_S_RUNNING, r);
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1, &st));
	EXPECT_EQ(0, st.exit_code);
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
	ex = (struct det_range){ 0, 0 };
	r = dput(1, DET_SNAP | DET_SNAP_EXCEPT | DET_START, 0, 0, e);
	if (r == 0)
		det_exit(buf[2 * PG]);
	ASSERT_EQ(DET_S_RUNNING, r);
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1, &st));
	EXPECT_EQ(6, st.exit_code);
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
	close(fd);
}

/* The pfn of the page at @p (pagemap bits 0-54); 0 if not shown. */
static unsigned long long pfn_of(int fd, const void *p)
{
	unsigned long long e;
	off_t at = (unsigned long)p / PG * sizeof(e);

	if (pread(fd, &e, sizeof(e), at) != sizeof(e))
		return 0;
	return e & ((1ULL << 55) - 1);
}

/*
 * DET_SNAP_GIVE: the child's copy holds the caller's pages in the range
 * handed over as its own, so its first write there takes the page itself
 * (the merge brings back the same pfn) rather than a copy.  The caller
 * reads zeros there until the merge, which takes back every page the
 * child holds there, written or not, and a page it first wrote there.
 * The range left out beside it stays the caller's, and a page past both
 * is a snapshot as ever.
 */
TEST(snap_give_hands_a_range_over)
{
	int pm = open("/proc/self/pagemap", O_RDONLY);
	unsigned char *buf = map(8 * PG);
	unsigned long long pfn0;
	struct det_range rg[2];
	struct det_status st;
	struct det_merge rep;
	long r, i;

	ASSERT_LE(0, pm);
	ASSERT_NE(NULL, buf);
	for (i = 0; i < 5 * PG; i++)		/* page 5 never populated */
		buf[i] = (unsigned char)(i / PG + 1);
	buf[6 * PG] = 7;
	buf[7 * PG] = 8;
	pfn0 = pfn_of(pm, buf);
	rg[0] = (struct det_range){ (unsigned long)buf + 6 * PG, PG };
	rg[1] = (struct det_range){ (unsigned long)buf, 6 * PG };
	ASSERT_EQ(0, become_master());
	r = dput(1, DET_SNAP | DET_SNAP_GIVE, 0, 0, (unsigned long)rg);
	if (r == 0) {
		long bad = 0;

		for (i = 0; i < 8 * PG; i++)
			if (buf[i] != (i < 5 * PG ? (unsigned char)(i / PG + 1) :
				       i == 7 * PG ? 8 : 0))
				bad++;
		buf[0] = 0x55;
		buf[5 * PG] = 0x66;
		buf[7 * PG + 1] = 0x77;
		dret();
		det_exit(bad > 255 ? 255 : bad);
	}
	ASSERT_EQ(DET_S_READY, r);
	for (i = 0; i < 6 * PG; i++)
		ASSERT_EQ(0, buf[i]) TH_LOG("byte %ld", i);
	EXPECT_EQ(7, buf[6 * PG]);
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	buf[6 * PG + 1] = 9;
	ASSERT_EQ(DET_S_READY, merge(1, buf, 8 * PG, &rep));
	EXPECT_EQ(0, rep.conflict_bytes);
	EXPECT_EQ(7, rep.copied_pages);	/* 0-5 against zeros, and 7 */
	EXPECT_EQ(0x55, buf[0]);
	EXPECT_EQ(1, buf[1]);
	for (i = 1; i < 5; i++)
		EXPECT_EQ(i + 1, buf[i * PG + 3]) TH_LOG("page %ld", i);
	EXPECT_EQ(0x66, buf[5 * PG]);
	EXPECT_EQ(7, buf[6 * PG]);
	EXPECT_EQ(9, buf[6 * PG + 1]);
	EXPECT_EQ(8, buf[7 * PG]);
	EXPECT_EQ(0x77, buf[7 * PG + 1]);
	if (pfn0) {
		EXPECT_EQ(pfn0, pfn_of(pm, buf));
	} else {
		TH_LOG("pagemap shows no pfn: the page's identity unchecked");
	}
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1, &st));
	EXPECT_EQ(0, st.exit_code);	/* the child saw what it was given */
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
	close(pm);
}

/*
 * A range handed over that the caller maps with a huge page: the child's
 * share is split into small pages first, so that its first write to one
 * reuses the page (the merge brings back the same pfn) rather than
 * copying it; every byte still comes back.
 */
TEST(snap_give_splits_a_huge_page)
{
	const unsigned long huge = 2UL << 20;
	int pm = open("/proc/self/pagemap", O_RDONLY);
	unsigned char *buf = map_huge_aligned(huge);
	struct det_range rg[2] = { { 0, 0 } };
	unsigned long long pfn0, pfn5;
	struct det_merge rep;
	long r;

	ASSERT_LE(0, pm);
	ASSERT_NE(NULL, buf);
	madvise(buf, huge, MADV_HUGEPAGE);
	memset(buf, 1, huge);
	pfn0 = pfn_of(pm, buf);
	pfn5 = pfn_of(pm, buf + 5 * PG);
	if (!pfn0 || pfn5 != pfn0 + 5 || pfn_of(pm, buf + huge - PG) !=
	    pfn0 + huge / PG - 1)
		SKIP(return, "no huge page here, or no pfn in pagemap");
	rg[1] = (struct det_range){ (unsigned long)buf, huge };
	ASSERT_EQ(0, become_master());
	r = dput(1, DET_SNAP | DET_SNAP_GIVE | DET_START, 0, 0,
		 (unsigned long)rg);
	if (r == 0) {
		buf[5 * PG] = 9;
		dret();
		det_exit(0);
	}
	ASSERT_EQ(DET_S_RUNNING, r);
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	EXPECT_EQ(0, buf[5 * PG]);
	ASSERT_EQ(DET_S_READY, merge(1, buf, huge, &rep));
	EXPECT_EQ(huge / PG, rep.copied_pages);
	EXPECT_EQ(9, buf[5 * PG]);
	EXPECT_EQ(1, buf[5 * PG + 1]);
	EXPECT_EQ(1, buf[0]);
	EXPECT_EQ(1, buf[huge - 1]);
	EXPECT_EQ(pfn5, pfn_of(pm, buf + 5 * PG));
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
	close(pm);
}

/*
 * DET_SNAP_GIVE's arguments: two ranges at @dststart, each checked as
 * DET_SNAP_EXCEPT's, not overlapping; a bad one creates no child and
 * takes nothing from the caller.  A deterministic caller hands a range
 * on (given to it by its own parent) and gets it back at the merge.
 */
TEST(snap_give_errors_and_nesting)
{
	unsigned char *buf = map(4 * PG);
	int fd = open("/proc/self/exe", O_RDONLY);
	unsigned char *file = mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 0);
	struct det_range rg[2];
	unsigned long g = (unsigned long)rg;
	struct det_status st;
	struct det_merge rep;
	long r;

	ASSERT_NE(NULL, buf);
	ASSERT_NE(MAP_FAILED, file);
	memset(buf, 3, 4 * PG);
	ASSERT_EQ(0, become_master());
	rg[0] = (struct det_range){ (unsigned long)buf, 2 * PG };
	rg[1] = (struct det_range){ (unsigned long)buf + PG, 2 * PG };
	EXPECT_EQ(-EINVAL, dput(1, DET_SNAP | DET_SNAP_GIVE, 0, 0, g));
	EXPECT_EQ(-EINVAL, dput(1, DET_SNAP | DET_SNAP_GIVE, 0, 0, 0));
	EXPECT_EQ(-EINVAL, dput(1, DET_VM_ZERO | DET_SNAP_GIVE,
				(unsigned long)buf, PG, g));
	EXPECT_EQ(-EFAULT, dput(1, DET_SNAP | DET_SNAP_GIVE, 0, 0, 8));
	rg[0] = (struct det_range){ 0, 0 };
	rg[1] = (struct det_range){ (unsigned long)file, PG };
	EXPECT_EQ(-EINVAL, dput(1, DET_SNAP | DET_SNAP_GIVE, 0, 0, g));
	rg[1] = (struct det_range){ (unsigned long)buf + 1, PG };
	EXPECT_EQ(-EINVAL, dput(1, DET_SNAP | DET_SNAP_GIVE, 0, 0, g));
	EXPECT_EQ(-ESRCH, det_status(1, &st));	/* never created */
	EXPECT_EQ(3, buf[PG]);			/* nothing taken */

	/* Master -> 1 gets pages 0-2, which 1 hands on to its child. */
	rg[1] = (struct det_range){ (unsigned long)buf, 3 * PG };
	r = dput(1, DET_SNAP | DET_SNAP_GIVE | DET_START, 0, 0, g);
	if (r == 0) {
		struct det_range inner[2] = {
			{ (unsigned long)buf + 2 * PG, PG },
			{ (unsigned long)buf, 2 * PG },
		};

		r = dput(1, DET_SNAP | DET_SNAP_GIVE | DET_SNAP_EXCEPT |
			 DET_START, 0, 0, (unsigned long)inner);
		if (r == 0) {
			if (buf[0] != 3 || buf[2 * PG] != 0)
				det_exit(1);
			buf[PG + 1] = 5;
			dret();
			det_exit(0);
		}
		buf[2 * PG] = buf[0] == 0 ? 6 : 1;	/* 0: handed on */
		if (r != DET_S_RUNNING || dget(1, 0, 0, 0, 0) != DET_S_READY ||
		    merge(1, buf, 3 * PG, &rep) != DET_S_READY)
			det_exit(2);
		dret();
		det_exit(0);
	}
	ASSERT_EQ(DET_S_RUNNING, r);
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	EXPECT_EQ(0, buf[0]);
	ASSERT_EQ(DET_S_READY, merge(1, buf, 4 * PG, &rep));
	EXPECT_EQ(3, buf[0]);
	EXPECT_EQ(5, buf[PG + 1]);
	EXPECT_EQ(3, buf[PG + 2]);
	EXPECT_EQ(6, buf[2 * PG]);
	EXPECT_EQ(3, buf[3 * PG]);
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
	close(fd);
}

/*
 * DET_VM_ZERO after the snapshot changes the child's pages without a write
 * of its own: zeroed pages that held data are its change like any write;
 * zeroing what never held data is none.
 */
TEST(zero_after_snapshot_is_a_change)
{
	unsigned char *buf = map(4 * PG);
	struct det_merge rep;
	unsigned long i;
	long r;

	ASSERT_NE(NULL, buf);
	memset(buf, 1, 2 * PG);		/* pages 2 and 3 never populated */
	ASSERT_EQ(0, become_master());
	r = dput(1, DET_SNAP, 0, 0, 0);
	if (r == 0) {
		buf[3 * PG] = 5;
		dret();
		det_exit(0);
	}
	ASSERT_EQ(DET_S_READY, r);
	ASSERT_EQ(DET_S_READY, dput(1, DET_VM_ZERO | DET_PROT_READ |
				    DET_PROT_WRITE, (unsigned long)buf + PG,
				    2 * PG, 0));
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	buf[0] = 2;
	ASSERT_EQ(DET_S_READY, merge(1, buf, 4 * PG, &rep));
	EXPECT_EQ(0, rep.conflict_bytes);
	EXPECT_EQ(2, rep.copied_pages);		/* page 1 zeroed, page 3 */
	EXPECT_EQ(2, buf[0]);
	EXPECT_EQ(1, buf[PG - 1]);
	for (i = PG; i < 3 * PG; i++)
		ASSERT_EQ(0, buf[i]) TH_LOG("byte %lu", i);
	EXPECT_EQ(5, buf[3 * PG]);
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

/*
 * A parent that ever pinned pages (here its own, through
 * process_vm_readv()) may have pinned ones fork() copies for the child at
 * once, writable, so the child's writes to them would not fault: its
 * children get a reference copy instead of a write log.  The merge is the
 * same; the report shows the other walk (every page of the range).  A
 * range handed over (DET_SNAP_GIVE) reads zeros in the reference, so the
 * merge takes back all the child holds there.
 */
TEST(pinned_parent_merges_through_a_reference)
{
	unsigned char *buf = map(4 * PG), tmp[64];
	struct iovec local = { tmp, sizeof(tmp) }, remote;
	struct det_range rg[2] = { { 0, 0 } };
	struct det_merge rep;
	long r;

	ASSERT_NE(NULL, buf);
	memset(buf, 1, 4 * PG);
	remote = (struct iovec){ buf, sizeof(tmp) };
	ASSERT_EQ((ssize_t)sizeof(tmp),
		  process_vm_readv(getpid(), &local, 1, &remote, 1, 0));
	ASSERT_EQ(0, become_master());
	r = fork_snap(1);
	if (r == 0) {
		buf[PG + 1] = 7;
		dret();
		det_exit(0);
	}
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	buf[3 * PG] = 2;
	ASSERT_EQ(DET_S_READY, merge(1, buf, 4 * PG, &rep));
	EXPECT_EQ(4, rep.scanned_pages);
	EXPECT_EQ(1, rep.copied_pages);
	EXPECT_EQ(7, buf[PG + 1]);
	EXPECT_EQ(2, buf[3 * PG]);
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));

	/* Handing a range over: the reference reads zeros there. */
	rg[1] = (struct det_range){ (unsigned long)buf, 2 * PG };
	r = dput(1, DET_SNAP | DET_SNAP_GIVE | DET_START, 0, 0,
		 (unsigned long)rg);
	if (r == 0) {
		buf[1] = buf[PG + 1] == 7 ? 8 : 9;
		dret();
		det_exit(0);
	}
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	EXPECT_EQ(0, buf[PG + 1]);
	ASSERT_EQ(DET_S_READY, merge(1, buf, 4 * PG, &rep));
	EXPECT_EQ(4, rep.scanned_pages);
	EXPECT_EQ(2, rep.copied_pages);
	EXPECT_EQ(8, buf[1]);
	EXPECT_EQ(1, buf[2]);
	EXPECT_EQ(7, buf[PG + 1]);
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

/*
 * The child's bytes of a page both sides changed go into the caller's own
 * page, in place.  Never into a page a later snapshot still shares: a
 * sibling snapshotted after the caller's write must not see them.  And
 * without pinning the page, which would leave the caller's later children
 * without a write log: a merge of one of them walks only what it wrote.
 */
TEST(merge_in_place_spares_siblings_and_the_log)
{
	unsigned char *buf = map(8 * PG);
	struct det_merge rep;
	long r;

	ASSERT_NE(NULL, buf);
	memset(buf, 1, 8 * PG);
	ASSERT_EQ(0, become_master());
	r = fork_snap(1);
	if (r == 0) {
		buf[100] = 5;
		dret();
		det_exit(0);
	}
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	buf[200] = 6;
	r = dput(2, DET_SNAP, 0, 0, 0);	/* shares the caller's page 0 */
	if (r == 0) {
		buf[PG] = buf[100] == 1 && buf[200] == 6 ? 9 : 8;
		dret();
		det_exit(0);
	}
	ASSERT_EQ(DET_S_READY, r);
	ASSERT_EQ(DET_S_READY, merge(1, buf, 8 * PG, &rep));
	EXPECT_EQ(1, rep.compared_pages);
	EXPECT_EQ(5, buf[100]);
	EXPECT_EQ(6, buf[200]);
	EXPECT_EQ(1, buf[101]);

	ASSERT_EQ(DET_S_RUNNING, dput(2, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, dget(2, 0, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, merge(2, buf, 8 * PG, &rep));
	EXPECT_EQ(9, buf[PG]);		/* its snapshot: no 5, the 6 */

	r = fork_snap(3);
	if (r == 0) {
		buf[5 * PG] = 4;
		dret();
		det_exit(0);
	}
	ASSERT_EQ(DET_S_READY, dget(3, 0, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, merge(3, buf, 8 * PG, &rep));
	EXPECT_EQ(1, rep.scanned_pages);	/* logged: the one written */
	EXPECT_EQ(4, buf[5 * PG]);
	EXPECT_EQ(5, buf[100]);
	ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
	ASSERT_EQ(0, dput(2, DET_KILL, 0, 0, 0));
	ASSERT_EQ(0, dput(3, DET_KILL, 0, 0, 0));
}

/* What the outsider below did, in memory it shares with the master. */
struct beside {
	volatile int stop, done;
	unsigned long passes, reverted, failed;
};

#define BESIDE (PG / 8)

/*
 * Another process with ptrace access to master @pid writes byte 1 of
 * every word of its page @page, generation after generation, reading each
 * pass back: no one else writes those bytes, so each must hold what it
 * wrote.  Stops when told to or when a call fails, and says it stopped.
 */
static void __attribute__((noreturn))
write_beside(pid_t pid, unsigned char *page, struct beside *w)
{
	static struct iovec remote[BESIDE];
	unsigned char mine[BESIDE], back[BESIDE], g = 0;
	struct iovec local;
	unsigned long k;

	for (k = 0; k < BESIDE; k++)
		remote[k] = (struct iovec){ page + 8 * k + 1, 1 };
	while (!w->stop) {
		g = g % 250 + 1;
		memset(mine, g, sizeof(mine));
		local = (struct iovec){ mine, sizeof(mine) };
		if (process_vm_writev(pid, &local, 1, remote, BESIDE, 0) !=
		    BESIDE)
			break;
		local = (struct iovec){ back, sizeof(back) };
		if (process_vm_readv(pid, &local, 1, remote, BESIDE, 0) !=
		    BESIDE)
			break;
		for (k = 0; k < BESIDE; k++)
			w->reverted += back[k] != g;
		w->passes++;
	}
	w->failed = !w->stop;
	w->done = 1;
	_exit(0);
}

/*
 * A merge changes only the bytes the child changed, even while another
 * process writes the caller's bytes beside them (a master is an ordinary
 * process: one with ptrace access can): a page both sides wrote is
 * merged in place, byte for byte, so none of the other process's writes
 * is ever put back to what it was, whenever it lands.
 */
TEST(merge_keeps_an_outsider_s_writes_beside_the_child_s)
{
	unsigned char *buf = map(PG);
	struct beside *w = mmap(NULL, sizeof(*w), PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	unsigned long k, both = 0;
	struct det_merge rep;
	unsigned int round;
	pid_t me = getpid();
	long r;

	ASSERT_NE(NULL, buf);
	ASSERT_NE(MAP_FAILED, w);
	memset(buf, 0, PG);
	/* A sibling, not a child: a master may have no children of its own. */
	r = syscall(SYS_clone, CLONE_PARENT, 0, 0, 0, 0);
	ASSERT_LE(0, r);
	if (r == 0)
		write_beside(me, buf, w);
	ASSERT_EQ(0, become_master());
	for (round = 0; round < 600; round++) {
		unsigned char v = round % 250 + 1;

		r = fork_snap(1);
		if (r == 0) {
			for (k = 0; k < PG; k += 8)
				buf[k] = v;
			dret();
			det_exit(0);
		}
		/*
		 * The caller writes the page too, so that it is merged in
		 * place whatever the outsider did yet (pages only the child
		 * changed: the next test).
		 */
		buf[2] = v;
		ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
		ASSERT_EQ(DET_S_READY, merge(1, buf, PG, &rep));
		both += rep.compared_pages;
		EXPECT_EQ(v, buf[0]);
		EXPECT_EQ(v, buf[PG - 8]);
		ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
	}
	w->stop = 1;
	for (k = 0; !w->done && k < 10000; k++)
		usleep(1000);
	ASSERT_EQ(1, w->done);		/* not our child: no waitpid() */
	EXPECT_EQ(0, w->failed);
	EXPECT_EQ(0, w->reverted);
	EXPECT_LT(0, w->passes);
	EXPECT_LT(100, both);	/* pages both sides wrote */
}

/* The outsider below and the master, in memory they share. */
struct during {
	volatile unsigned long go, gone;	/* rounds started, finished */
	volatile int failed;
};

#define DURING_PAGES 256UL
#define DURING_SLOTS (PG / 8 * 7)	/* bytes 1..7 of each word */

/* Slot @s of a page: a byte the child never writes (it writes byte 0). */
static unsigned long during_slot(unsigned long s)
{
	return 8 * (s / 7) + 1 + s % 7;
}

/*
 * Another process with ptrace access to master @pid: when told round r
 * has begun, it writes slot r of each of the master's DURING_PAGES pages
 * at @buf, last page first, and says it is done.  Exits when told to, or
 * when the master is gone (a failed assertion ends it early).
 */
static void __attribute__((noreturn))
write_during(pid_t pid, unsigned char *buf, struct during *w)
{
	static struct iovec remote[DURING_PAGES];
	static unsigned char mine[DURING_PAGES];
	struct iovec local = { mine, sizeof(mine) };
	unsigned long k, r;

	memset(mine, 0xa5, sizeof(mine));
	for (r = 1; ; r++) {
		while (w->go < r && !kill(pid, 0))
			sched_yield();
		if (w->go < r || w->go == ~0UL)
			_exit(0);
		for (k = 0; k < DURING_PAGES; k++)
			remote[k] = (struct iovec){
				buf + (DURING_PAGES - 1 - k) * PG +
				during_slot(r % DURING_SLOTS), 1 };
		if (process_vm_writev(pid, &local, 1, remote, DURING_PAGES,
				      0) != DURING_PAGES)
			w->failed = 1;
		w->gone = r;
	}
}

/*
 * The same for pages only the child changed, which the merge takes whole
 * from the child: another process's write that lands while the merge
 * runs, after the merge saw the caller still had the snapshot's page,
 * stands too.  The outsider writes every page while each merge runs.
 */
TEST(merge_keeps_an_outsider_s_writes_to_pages_only_the_child_changed)
{
	unsigned char *buf = map(DURING_PAGES * PG);
	struct during *w = mmap(NULL, sizeof(*w), PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	unsigned long k, r, lost = 0, taken = 0;
	struct det_merge rep;
	pid_t me = getpid();
	long c;

	ASSERT_NE(NULL, buf);
	ASSERT_NE(MAP_FAILED, w);
	memset(buf, 0, DURING_PAGES * PG);
	c = syscall(SYS_clone, CLONE_PARENT, 0, 0, 0, 0);
	ASSERT_LE(0, c);
	if (c == 0)
		write_during(me, buf, w);
	ASSERT_EQ(0, become_master());
	for (r = 1; r <= 150; r++) {
		unsigned long slot = during_slot(r % DURING_SLOTS);

		c = fork_snap(1);
		if (c == 0) {
			for (k = 0; k < DURING_PAGES * PG; k += 8)
				buf[k] = r;
			dret();
			det_exit(0);
		}
		ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
		w->go = r;
		ASSERT_EQ(DET_S_READY, merge(1, buf, DURING_PAGES * PG, &rep));
		taken += rep.copied_pages;
		for (k = 0; w->gone < r && k < 10000000; k++)
			sched_yield();
		ASSERT_EQ(r, w->gone);
		for (k = 0; k < DURING_PAGES; k++) {
			lost += buf[k * PG + slot] != 0xa5;
			EXPECT_EQ((unsigned char)r, buf[k * PG + PG - 8]);
		}
		ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
	}
	w->go = ~0UL;
	EXPECT_EQ(0, w->failed);
	EXPECT_EQ(0, lost);
	EXPECT_LT(0, taken);	/* pages only the child changed */
}

/* A private file mapping, the brk heap and the stack range. */
TEST(file_mapping_heap_stack)
{
	char path[] = "/tmp/det_memory_XXXXXX";
	unsigned char page[PG], stk[300], *f, *heap;
	struct det_merge rep;
	int fd, i;
	long r;

	memset(page, 'f', sizeof(page));
	fd = mkstemp(path);
	ASSERT_LE(0, fd);
	unlink(path);
	ASSERT_EQ((ssize_t)sizeof(page), write(fd, page, sizeof(page)));
	ASSERT_EQ((ssize_t)sizeof(page), write(fd, page, sizeof(page)));
	f = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	ASSERT_NE(MAP_FAILED, f);
	heap = sbrk(0);
	ASSERT_EQ(0, brk(heap + 2 * PG));
	memset(heap, 0, 2 * PG);
	memset(stk, 's', sizeof(stk));
	ASSERT_EQ(0, become_master());
	r = fork_snap(1);
	if (r == 0) {
		f[PG + 1] = 'c';	/* never touched by the parent */
		heap[100] = 'h';
		stk[299] = 't';
		dret();
	}
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, merge(1, f, 2 * PG, &rep));
	EXPECT_EQ('c', f[PG + 1]);
	EXPECT_EQ('f', f[PG]);
	ASSERT_EQ(DET_S_READY, merge(1, heap, 2 * PG, &rep));
	EXPECT_EQ('h', heap[100]);
	/* A range on the stack: only its bytes, not the caller's frames. */
	ASSERT_EQ(DET_S_READY, merge(1, stk, sizeof(stk), &rep));
	EXPECT_EQ('t', stk[299]);
	EXPECT_EQ('s', stk[0]);
	/* The file itself is unchanged (private mapping). */
	ASSERT_EQ(PG, pread(fd, page, PG, PG));
	for (i = 0; i < (int)PG; i++)
		ASSERT_EQ('f', page[i]);
	close(fd);
}

/* A worker reused with DET_SNAP | DET_REGS | DET_START on a fresh stack. */
static volatile long task_in, task_out;
static unsigned char worker_stack[16 * 4096] __attribute__((aligned(16)));

static void __attribute__((noreturn, used)) worker(void)
{
	for (;;) {
		task_out = task_in * task_in;
		dret();
	}
}

TEST(snap_existing_child_with_regs)
{
	struct user_regs_struct regs;
	struct det_merge rep;
	unsigned long vdso;
	long r, k;

	vdso = (unsigned long)getauxval(AT_SYSINFO_EHDR);
	ASSERT_EQ(0, become_master());
	r = dput(5, 0, 0, 0, 0);
	if (r == 0)
		det_exit(9);
	ASSERT_EQ(DET_S_READY, dget(5, DET_REGS | DET_GENERAL_REGS,
				    (unsigned long)&regs, sizeof(regs), 0));
	for (k = 1; k <= 5; k++) {
		task_in = k;
		regs.rip = (unsigned long)worker;
		regs.rsp = (unsigned long)(worker_stack + sizeof(worker_stack)
					   - 8);
		ASSERT_EQ(DET_S_RUNNING,
			  dput(5, DET_SNAP | DET_REGS | DET_GENERAL_REGS |
			       DET_START, (unsigned long)&regs, sizeof(regs),
			       0));
		ASSERT_EQ(DET_S_READY, dget(5, 0, 0, 0, 0));
		ASSERT_EQ(DET_S_READY, merge(5, (void *)&task_out,
					     sizeof(task_out), &rep));
		EXPECT_EQ(k * k, task_out);
	}
	/* The snapshot did not bring the master's vDSO into the child. */
	if (vdso) {
		char *c = map(PG);

		ASSERT_NE(NULL, c);
		EXPECT_EQ(-EFAULT, dget(5, DET_VM_COPY, (unsigned long)c, 1,
					vdso));
	}
}

/* ---- randomized: random writes on both sides vs a model of the merge */

static unsigned long long rng_state;

static unsigned long long rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

#define RPAGES 6
#define RSIZE (RPAGES * PG)

/* Random writes: clustered at page edges and on few values (collisions). */
static void random_writes(unsigned char *buf, int count)
{
	int k;

	for (k = 0; k < count; k++) {
		unsigned long x = rng(), at;

		if ((x & 3) == 0)	/* a quarter anywhere, the rest hot */
			at = (x >> 8) % RSIZE;
		else
			at = ((x >> 8) % RPAGES) * PG + (x >> 20) % 8 - 4;
		buf[at % RSIZE] = (unsigned char)((x >> 40) % 4);
	}
}

SLOW_TEST(randomized_against_model, 300)
{
	unsigned char *buf = map(RSIZE), *base = map(RSIZE);
	unsigned char *mine = map(RSIZE), *theirs = map(RSIZE);
	unsigned long rounds = 2000, round, lo, hi, i, conflicts = 0;
	unsigned long long seed = 0x5eed0123456789abULL, child_seed;
	struct det_merge rep;
	long r;

	ASSERT_NE(NULL, buf);
	ASSERT_NE(NULL, theirs);
	ASSERT_EQ(0, become_master());
	rng_state = seed;
	memset(buf, 0, RSIZE);
	for (round = 0; round < rounds; round++) {
		memcpy(base, buf, RSIZE);
		child_seed = rng();
		r = fork_snap(1);
		if (r == 0) {
			rng_state = child_seed;
			random_writes(buf, 1 + (int)(rng() % 40));
			dret();
		}
		ASSERT_EQ(DET_S_RUNNING, r);
		random_writes(buf, (int)(rng() % 40));
		lo = rng() % RSIZE;
		hi = lo + rng() % (RSIZE - lo + 1);
		memcpy(mine, buf, RSIZE);
		/* The model: replay the child's writes on the base. */
		{
			unsigned long long saved = rng_state;

			memcpy(theirs, base, RSIZE);
			rng_state = child_seed;
			random_writes(theirs, 1 + (int)(rng() % 40));
			rng_state = saved;
		}
		{
			unsigned long want = 0, first = 0;

			for (i = lo; i < hi; i++)
				if (theirs[i] != base[i] && mine[i] != base[i] &&
				    theirs[i] != mine[i] && !want++)
					first = i;
			ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
			r = merge(1, buf + lo, hi - lo, &rep);
			if (want) {
				conflicts++;
				ASSERT_EQ(-DET_E_CONFLICT, r);
				ASSERT_EQ(want, rep.conflict_bytes);
				ASSERT_EQ((unsigned long)buf + first,
					  rep.conflict_addr);
				ASSERT_EQ(0, memcmp(buf, mine, RSIZE));
			} else {
				ASSERT_EQ(DET_S_READY, r) TH_LOG("round %lu", round);
				for (i = lo; i < hi; i++)
					if (theirs[i] != base[i])
						mine[i] = theirs[i];
				ASSERT_EQ(0, memcmp(buf, mine, RSIZE))
					TH_LOG("round %lu [%lu, %lu)", round, lo, hi);
			}
		}
		ASSERT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
	}
	TH_LOG("%lu rounds, %lu with conflicts", rounds, conflicts);
	EXPECT_LT(0, conflicts);
	EXPECT_LT(conflicts, rounds);
}

TEST_HARNESS_MAIN
