// SPDX-License-Identifier: GPL-2.0
/*
 * Behaviour programs written for v3.0-det rely on (docs/kernel.md,
 * "Differences from v3.0-det"): each restored behaviour is pinned here,
 * and so is DET_MERGE over the program's own file-backed pages, which the
 * original benchmarks merge on every join.
 */
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/user.h>
#include <sys/vfs.h>

#include "det_test.h"

#define PG 4096UL

static long merge(unsigned long id, const void *start, size_t size,
		  struct det_merge *rep)
{
	memset(rep, 0xa5, sizeof(*rep));
	return dget(id, DET_MERGE, (unsigned long)start, size,
		    (unsigned long)rep);
}

/*
 * File-backed pages of this program that nobody writes before the
 * snapshot: the reference has no page-table entries for them.
 */
static const char ro_pages[4 * PG] __attribute__((aligned(4096))) = { 1 };
static char data_pages[4 * PG]
	__attribute__((aligned(4096), section(".data"))) = { 2 };
static char data_written[4 * PG]
	__attribute__((aligned(4096), section(".data"))) = { 3 };

/* A read the compiler cannot fold or drop. */
static char peek(const char *p)
{
	return *(const volatile char *)p;
}

static volatile unsigned long sink;

static unsigned long __attribute__((noinline, aligned(4096)))
text_page_fn(unsigned long x)
{
	return x * 3 + 1;
}

/* The page holding text_page_fn() and the next one. */
static const void *text_page(void)
{
	return (const void *)((unsigned long)text_page_fn & ~(PG - 1));
}

/* Is this program's executable on tmpfs (det_file_fixed())? */
static int exe_on_tmpfs(void)
{
	struct statfs fs;

	return !statfs("/proc/self/exe", &fs) && fs.f_type == TMPFS_MAGIC;
}

/* B1: pages the child only read or ran are no change, not even EFAULT. */
TEST(merge_skips_file_pages_child_only_read)
{
	struct det_merge rep;
	unsigned long i;
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(1, DET_SNAP | DET_START, 0, 0, 0);
	if (r == 0) {
		unsigned long s = 0;

		/* Read every page (fault-around maps more), run the code. */
		for (i = 0; i < sizeof(ro_pages); i += PG)
			s += peek(ro_pages + i) + peek(data_pages + i);
		sink = s + text_page_fn(s);
		dret();
		/* Now write one byte of a page nobody wrote before. */
		data_written[PG + 7] = 42;
		dret();
		det_exit(0);
	}
	ASSERT_EQ(DET_S_RUNNING, r);

	/* Read-only data: no change; without the fix, -EFAULT. */
	EXPECT_EQ(DET_S_READY, merge(1, ro_pages, sizeof(ro_pages), &rep));
	EXPECT_EQ(0, rep.copied_pages);
	EXPECT_EQ(0, rep.compared_pages);
	/* Code the child ran, read-only and executable in the caller. */
	EXPECT_EQ(DET_S_READY, merge(1, text_page(), 2 * PG, &rep));
	EXPECT_EQ(0, rep.copied_pages + rep.compared_pages);
	/*
	 * Writable data it only read: nothing copied.  Its own executable
	 * on tmpfs stays the page cache's in the child, so the reads were
	 * no writes and nothing is looked at; any other file's pages were
	 * copied at the snapshot, and those copies are logged writes.
	 */
	EXPECT_EQ(DET_S_READY, merge(1, data_pages, sizeof(data_pages), &rep));
	EXPECT_EQ(0, rep.copied_pages + rep.compared_pages);
	EXPECT_EQ(exe_on_tmpfs() ? 0 : 4, rep.scanned_pages);

	/* A real write into a file-backed page is still merged. */
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_READY, dget(1, 0, 0, 0, 0));
	EXPECT_EQ(DET_S_READY, merge(1, data_written, sizeof(data_written),
				     &rep));
	EXPECT_EQ(1, rep.copied_pages + rep.compared_pages);
	EXPECT_EQ(42, data_written[PG + 7]);
	EXPECT_EQ(3, peek(data_written));
	/* And the whole program image merges cleanly. */
	EXPECT_EQ(DET_S_READY, merge(1, ro_pages, sizeof(ro_pages), &rep));
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_EXIT_NORMAL, dget(1, 0, 0, 0, 0));
	EXPECT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

/*
 * U1: dget(c, DET_VM_COPY, start, n, dststart) copies the child's
 * [dststart, +n) to the caller's [start, +n): the caller's address comes
 * first for get as for put.  Both ranges are mapped on both sides here, so
 * the old, swapped order would have succeeded silently the wrong way.
 */
TEST(vm_copy_get_caller_address_first)
{
	char *a = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *b = a + PG;
	long r;

	ASSERT_NE(MAP_FAILED, a);
	memset(a, 'a', PG);
	memset(b, 'b', PG);
	ASSERT_EQ(0, become_master());
	r = dput(1, DET_START, 0, 0, 0);
	if (r == 0) {
		memset(a, 'A', PG);
		memset(b, 'B', PG);
		dret();
		det_exit(0);
	}
	ASSERT_EQ(DET_S_READY, dget(1, DET_VM_COPY, (unsigned long)a + 10, 20,
				    (unsigned long)b + 10));
	EXPECT_EQ('a', a[9]);
	EXPECT_EQ('B', a[10]);
	EXPECT_EQ('B', a[29]);
	EXPECT_EQ('a', a[30]);
	EXPECT_EQ('b', b[10]);	/* the caller's b is not written */
	/* dput: the caller's a to the child's b; read it back. */
	ASSERT_EQ(DET_S_READY, dput(1, DET_VM_COPY, (unsigned long)a, PG,
				    (unsigned long)b));
	ASSERT_EQ(DET_S_READY, dget(1, DET_VM_COPY, (unsigned long)b, PG,
				    (unsigned long)b));
	EXPECT_EQ('B', b[10]);
	EXPECT_EQ('a', b[0]);
	EXPECT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

/* U2: DET_PROT_* op-flags on DET_VM_COPY are taken and ignored. */
TEST(vm_copy_ignores_prot_opflags)
{
	static char buf[2 * PG] __attribute__((aligned(4096)));
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(1, 0, 0, 0, 0);
	if (r == 0)
		for (;;)
			dret();
	memset(buf, 'p', PG);
	ASSERT_EQ(DET_S_READY, dput(1, DET_VM_COPY | DET_PROT_READ |
				    DET_PROT_WRITE | DET_PROT_EXEC,
				    (unsigned long)buf, PG,
				    (unsigned long)buf + PG));
	ASSERT_EQ(DET_S_READY, dget(1, DET_VM_COPY | DET_PROT_READ,
				    (unsigned long)buf + PG, 8,
				    (unsigned long)buf + PG));
	EXPECT_EQ('p', buf[PG + 7]);
	/* Other op-flag bits are still refused. */
	EXPECT_EQ(-EINVAL, dput(1, DET_VM_COPY | 0x80000, (unsigned long)buf,
				PG, (unsigned long)buf));
	EXPECT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

/* U3: DET_BECOME_MASTER from a master is a no-op returning 0. */
TEST(become_master_twice)
{
	long r;

	ASSERT_EQ(0, become_master());
	EXPECT_EQ(0, become_master());
	r = dput(1, 0, 0, 0, 0);
	if (r == 0)
		det_exit(0);
	ASSERT_EQ(DET_S_READY, r);
	/* With a child too; it is kept. */
	EXPECT_EQ(0, become_master());
	EXPECT_EQ(DET_S_READY, dget(1, DET_GET_STATUS, 0, 0, 0));
	EXPECT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

/* U5: DET_REGS with @size 0 means the selected sets' size. */
TEST(regs_size_zero_means_whole_sets)
{
	struct user_regs_struct regs, again;
	unsigned char both[DET_GENERAL_REGS_SIZE + DET_FP_REGS_SIZE];
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(1, 0, 0, 0, 0);
	if (r == 0)
		det_exit(0);
	memset(&regs, 0, sizeof(regs));
	ASSERT_EQ(DET_S_READY, dget(1, DET_REGS | DET_GENERAL_REGS,
				    (unsigned long)&regs, 0, 0));
	EXPECT_NE(0, regs.rip);
	EXPECT_NE(0, regs.rsp);
	regs.rbx = 0x1234;
	ASSERT_EQ(DET_S_READY, dput(1, DET_REGS | DET_GENERAL_REGS,
				    (unsigned long)&regs, 0, 0));
	ASSERT_EQ(DET_S_READY, dget(1, DET_REGS | DET_GENERAL_REGS,
				    (unsigned long)&again, sizeof(again), 0));
	EXPECT_EQ(0x1234, again.rbx);
	memset(both, 0xee, sizeof(both));
	ASSERT_EQ(DET_S_READY, dget(1, DET_REGS | DET_GENERAL_REGS |
				    DET_FP_REGS, (unsigned long)both, 0, 0));
	EXPECT_EQ(0, memcmp(both, &again, sizeof(again)));
	/* Size 0 still needs a buffer; other sizes must be exact. */
	EXPECT_EQ(-EINVAL, dput(1, DET_REGS | DET_GENERAL_REGS, 0, 0, 0));
	EXPECT_EQ(-EINVAL, dget(1, DET_REGS | DET_GENERAL_REGS,
				(unsigned long)&regs, 8, 0));
	EXPECT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

/* U7: DET_GET_STATUS works through dput() too, and creates nothing. */
TEST(get_status_through_dput)
{
	struct det_status st;
	long r;

	ASSERT_EQ(0, become_master());
	EXPECT_EQ(-ESRCH, dput(1, DET_GET_STATUS, 0, 0, 0));
	EXPECT_EQ(-ESRCH, dget(1, 0, 0, 0, 0));
	r = dput(1, 0, 0, 0, 0);
	if (r == 0) {
		dret();
		det_exit(9);
	}
	memset(&st, 0xa5, sizeof(st));
	EXPECT_EQ(DET_S_READY, dput(1, DET_GET_STATUS, (unsigned long)&st,
				    sizeof(st), 0));
	EXPECT_EQ(DET_S_READY, st.status);
	/* With DET_START, and waiting for the child to stop. */
	EXPECT_EQ(DET_S_RUNNING, dput(1, DET_GET_STATUS | DET_START, 0, 0, 0));
	EXPECT_EQ(DET_S_READY, dput(1, DET_GET_STATUS, 0, 0, 0));
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	EXPECT_EQ(DET_S_EXIT_NORMAL, dput(1, DET_GET_STATUS, (unsigned long)&st,
					  sizeof(st), 0));
	EXPECT_EQ(9, st.exit_code);
	EXPECT_EQ(-EINVAL, dput(1, DET_GET_STATUS, (unsigned long)&st, 4, 0));
	EXPECT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

TEST_HARNESS_MAIN
