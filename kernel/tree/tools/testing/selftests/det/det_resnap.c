// SPDX-License-Identifier: GPL-2.0
/*
 * DET_SNAP of a child that already holds a snapshot of its deterministic
 * parent: the kernel brings it up to date in place (kernel/det/resnap.c)
 * instead of copying the whole address space again.  Whatever way it
 * takes, the child must see exactly what a new copy would show, its old
 * writes gone, and nothing either side writes afterwards may reach the
 * other before a merge.
 *
 * The master (the test) makes deterministic child A (ID 1), which runs a
 * scenario against its own child B (ID 2), restarting B for each round
 * with DET_SNAP | DET_REGS at b_main() on B's own stack, and exits with 0
 * or the number of the check that failed.  On a kernel with debugfs the
 * test also checks that the rounds were brought up to date in place
 * (det/resnaps), not all by new copies.
 */
#include <string.h>
#include <sys/mman.h>
#include <sys/user.h>

#include "det_test.h"

#define PG 4096UL
#define NPAGES 64
#define ROUNDS 60
#define HUGE (2UL << 20)

static unsigned char *buf;	/* populated by the master before A exists */
static unsigned char *lazy;	/* never touched by A itself */
static unsigned char *extra;	/* mapped into A by the master later */
static unsigned char *hwin;	/* two 2 MiB windows, for huge pages */
static volatile unsigned long plan, round_no, seen;
static unsigned char bstack[16 * PG] __attribute__((aligned(16)));

enum {
	SUM = 1, WRITE_P, WRITE_Q, READ_EXTRA, DIRTY, WRITE_R, SUM_HUGE, SUM_BUF
};

static unsigned long sum(const unsigned char *p, unsigned long n)
{
	unsigned long h = 1469598103934665603UL, i;

	for (i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211UL;
	return h;
}

static unsigned long sum_all(void)
{
	return sum(buf, NPAGES * PG) * 31 + sum(lazy, NPAGES * PG);
}

/* B's code for a round: what `plan` says, then stop for good. */
static void __attribute__((noreturn, used)) b_main(void)
{
	unsigned long r = round_no, i;

	switch (plan) {
	case SUM:
		seen = sum_all();
		/* Writes of its own, which the next snapshot must undo. */
		for (i = r % 7; i < NPAGES; i += 5)
			buf[i * PG + (r & 63)] = (unsigned char)(r * 3 + 1);
		for (i = r % 3; i < NPAGES; i += 9)
			lazy[i * PG + (r & 63)] = (unsigned char)(r + 7);
		break;
	case WRITE_P:
		buf[5 * PG + 10] = 1;
		break;
	case WRITE_Q:
		buf[9 * PG + 10] = 7;
		break;
	case READ_EXTRA:
		seen = extra[0];
		break;
	case DIRTY:
		for (i = 0; i < 16; i++)
			buf[(i * 4 + r % 4) * PG] = (unsigned char)r;
		break;
	case WRITE_R:
		seen = buf[7 * PG];
		buf[7 * PG + 100] = (unsigned char)(r + 50);
		break;
	case SUM_BUF:
		seen = sum(buf, NPAGES * PG);
		/* Its own pages, in and out of the range left out. */
		buf[(8 + r % 16) * PG + 100] = (unsigned char)(r + 1);
		buf[(r % 8) * PG + 100] = (unsigned char)(r + 1);
		break;
	case SUM_HUGE:
		seen = sum(hwin, 2 * HUGE);
		/* Into a huge page B shares with A: splits B's mapping. */
		hwin[(r * 13 % 512) * PG + 8] = (unsigned char)(r + 11);
		break;
	}
	for (;;)
		dret();
}

static struct user_regs_struct bregs;

/* Make B, parked, and keep registers to restart it with. */
static int make_b(void)
{
	long r = dput(2, DET_SNAP, 0, 0, 0);

	if (r == 0)
		for (;;)
			dret();
	if (r != DET_S_READY)
		return 0;
	return dget(2, DET_REGS | DET_GENERAL_REGS, (unsigned long)&bregs, 0,
		    0) == DET_S_READY;
}

/* A new snapshot for B, which then runs `what` and stops. */
static long run_b(unsigned long what)
{
	long r;

	plan = what;
	bregs.rip = (unsigned long)b_main;
	bregs.rsp = (unsigned long)(bstack + sizeof(bstack)) - 8;
	r = dput(2, DET_SNAP | DET_REGS | DET_GENERAL_REGS | DET_START,
		 (unsigned long)&bregs, 0, 0);
	return r == DET_S_RUNNING ? dget(2, 0, 0, 0, 0) : -1000 + r;
}

static unsigned long b_seen(void)
{
	unsigned long v = 0;

	det_read_child(2, &seen, &v, sizeof(v));
	return v;
}

static int merge_b(void)
{
	return dget(2, DET_MERGE, (unsigned long)buf, NPAGES * PG, 0) >= 0 &&
	       dget(2, DET_MERGE, (unsigned long)lazy, NPAGES * PG, 0) >= 0;
}

/*
 * Rounds where both sides write, B's changes merged every third round:
 * B's view at each snapshot hashes as A's did.  A also writes right after
 * starting B, which B must not see.
 */
static int a_matches(void)
{
	unsigned long r, i, want;

	if (!make_b())
		return 1;
	for (r = 1; r <= ROUNDS; r++) {
		for (i = r % 5; i < NPAGES; i += 4)
			buf[i * PG + 128 + r % 97] ^= (unsigned char)r;
		round_no = r;
		want = sum_all();
		plan = SUM;
		bregs.rip = (unsigned long)b_main;
		bregs.rsp = (unsigned long)(bstack + sizeof(bstack)) - 8;
		if (dput(2, DET_SNAP | DET_REGS | DET_GENERAL_REGS | DET_START,
			 (unsigned long)&bregs, 0, 0) != DET_S_RUNNING)
			return 2;
		/* A page B maps since this very snapshot, written at once. */
		buf[3 * PG + 300] ^= 0x5a;
		if (dget(2, 0, 0, 0, 0) != DET_S_READY)
			return 3;
		if (b_seen() != want)
			return 100 + r;
		if (r % 3 == 0 && !merge_b())
			return 4;
	}
	return 0;
}

/*
 * B writes P and is merged; a new snapshot; A writes P again; B writes
 * only Q.  The merge takes Q and leaves P alone: the new snapshot's log
 * starts empty, so B's write to P before it is not B's change any more.
 */
static int a_fresh_log(void)
{
	if (!make_b() || run_b(WRITE_P) != DET_S_READY || !merge_b())
		return 1;
	if (buf[5 * PG + 10] != 1)
		return 2;
	if (run_b(WRITE_Q) != DET_S_READY)
		return 3;
	/* After the snapshot run_b() made: B must not see it. */
	buf[5 * PG + 10] = 2;
	if (!merge_b())
		return 4;
	if (buf[5 * PG + 10] != 2 || buf[9 * PG + 10] != 7)
		return 5;
	return 0;
}

/*
 * Both A and B write page R in every round, other bytes of it, so that
 * each merge writes B's bytes into A's page and leaves B's page B's own,
 * writable.  A rewrites R before each snapshot, keeping its page there
 * writable too: B's is brought up to date by a copy rather than by
 * sharing A's.  B must see A's bytes, and B's next write to R must still
 * be logged and merged.
 */
static int a_copied(void)
{
	unsigned long r;

	if (!make_b())
		return 1;
	for (r = 1; r <= 20; r++) {
		buf[7 * PG] = (unsigned char)r;
		round_no = r;
		plan = WRITE_R;
		bregs.rip = (unsigned long)b_main;
		bregs.rsp = (unsigned long)(bstack + sizeof(bstack)) - 8;
		if (dput(2, DET_SNAP | DET_REGS | DET_GENERAL_REGS | DET_START,
			 (unsigned long)&bregs, 0, 0) != DET_S_RUNNING)
			return 2;
		buf[7 * PG + 1] = (unsigned char)r;
		if (dget(2, 0, 0, 0, 0) != DET_S_READY)
			return 3;
		if (b_seen() != r)
			return 100 + r;
		if (!merge_b())
			return 4;
		if (buf[7 * PG] != r || buf[7 * PG + 100] != r + 50)
			return 200 + r;
	}
	return 0;
}

/*
 * The master maps `extra` into A while A is stopped: A's mappings no
 * longer match B's, and B's next snapshot must still show it.
 */
static int a_new_mapping(void)
{
	if (!make_b() || run_b(SUM) != DET_S_READY)
		return 1;
	dret();				/* the master maps `extra` now */
	extra[0] = 42;
	if (run_b(READ_EXTRA) != DET_S_READY)
		return 2;
	if (b_seen() != 42)
		return 3;
	if (run_b(READ_EXTRA) != DET_S_READY || b_seen() != 42)
		return 4;
	return 0;
}

/* Cycles where both sides write 16 pages; the master reads meminfo. */
static int a_cycles(void)
{
	unsigned long r, i;

	if (!make_b())
		return 1;
	for (r = 1; r <= 6600; r++) {
		for (i = 0; i < 16; i++)
			buf[(i * 4 + 2) * PG + 8] = (unsigned char)r;
		round_no = r;
		if (run_b(DIRTY) != DET_S_READY)
			return 2;
		if (r == 500 || r == 6500)
			dret();		/* the master takes a reading */
	}
	return 0;
}

/*
 * A, created without DET_SNAP, has no write log and takes huge pages as
 * any process does.  Over the rounds, B's snapshot has to take a huge
 * page the same in both (nobody wrote it), one new in A (the second
 * window, first written after B exists), one A split by writing part of
 * it, and one B split: B must see what a new copy would show every time.
 * A stops once, for the master to count the huge pages.
 */
static int a_huge(void)
{
	unsigned long r, want;

	memset(hwin, 1, HUGE);
	if (!make_b())
		return 1;
	dret();
	for (r = 1; r <= 12; r++) {
		if (r == 4)
			memset(hwin + HUGE, 2, HUGE);
		if (r >= 7)
			hwin[(r * 37 % 512) * PG + r] ^= (unsigned char)r;
		round_no = r;
		want = sum(hwin, 2 * HUGE);
		if (run_b(SUM_HUGE) != DET_S_READY)
			return 2;
		if (b_seen() != want)
			return 100 + r;
		if (r % 3 == 0 &&
		    dget(2, DET_MERGE, (unsigned long)hwin, 2 * HUGE, 0) < 0)
			return 3;
		if (r % 3 == 0 && hwin[(r * 13 % 512) * PG + 8] != r + 11)
			return 200 + r;
	}
	return 0;
}

static unsigned char want_buf[NPAGES * PG];

/*
 * Rounds with DET_SNAP_EXCEPT over 16 pages of buf (odd rounds) and
 * without (even rounds), both sides writing in and out of the range: B
 * reads zeros there exactly in the odd rounds and A's bytes elsewhere;
 * neither its own old pages nor A's leak into a round that leaves the
 * range out.
 */
static int a_except(void)
{
	struct det_range ex = { (unsigned long)buf + 8 * PG, 16 * PG };
	unsigned long r, want, odd;

	if (!make_b())
		return 1;
	for (r = 1; r <= 12; r++) {
		odd = r % 2;
		buf[(r % NPAGES) * PG + 5] ^= (unsigned char)r;
		buf[(8 + r % 16) * PG + 6] ^= (unsigned char)r;
		memcpy(want_buf, buf, sizeof(want_buf));
		if (odd)
			memset(want_buf + 8 * PG, 0, 16 * PG);
		want = sum(want_buf, sizeof(want_buf));
		round_no = r;
		plan = SUM_BUF;
		bregs.rip = (unsigned long)b_main;
		bregs.rsp = (unsigned long)(bstack + sizeof(bstack)) - 8;
		if (dput(2, DET_SNAP | DET_REGS | DET_GENERAL_REGS | DET_START |
			 (odd ? DET_SNAP_EXCEPT : 0), (unsigned long)&bregs, 0,
			 odd ? (unsigned long)&ex : 0) != DET_S_RUNNING)
			return 2;
		if (dget(2, 0, 0, 0, 0) != DET_S_READY)
			return 3;
		if (b_seen() != want)
			return 100 + r;
	}
	return 0;
}

static void __attribute__((noinline)) setup_buffers(void)
{
	unsigned long i;

	buf = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	lazy = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	/* An address free in A, for the master to map there later. */
	extra = mmap(NULL, 4 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
		     -1, 0);
	munmap(extra, 4 * PG);
	for (i = 0; i < NPAGES * PG; i++)
		buf[i] = (unsigned char)(i * 7 + i / PG);
}

/* Run scenario @a in child A; its exit status, or -1. */
static int run_a(int (*a)(void))
{
	struct det_status st;
	long r = dput(1, DET_SNAP | DET_START, 0, 0, 0);

	if (r == 0)
		det_exit(a());
	if (r != DET_S_RUNNING || det_status(1, &st) != DET_S_EXIT_NORMAL)
		return -1;
	dput(1, DET_KILL, 0, 0, 0);
	return st.exit_code;
}

/*
 * Run scenario @a in child A: its exit status, and into *@in_place how
 * many snapshots were made in place meanwhile (-1 without debugfs).
 */
static int run_counted(int (*a)(void), long *in_place)
{
	long before = det_debugfs_count("resnaps");
	int ret = run_a(a);

	*in_place = before < 0 ? -1 : det_debugfs_count("resnaps") - before;
	return ret;
}

TEST(resnap_matches_a_new_copy)
{
	long n;

	ASSERT_EQ(0, become_master());
	setup_buffers();
	EXPECT_EQ(0, run_counted(a_matches, &n));
	/*
	 * Most rounds in place (a merge into an empty mapping forces a new
	 * copy once: A's mapping gains an anon_vma B is not linked to).
	 */
	if (n >= 0)
		EXPECT_LE(ROUNDS / 2, n);
}

TEST(resnap_starts_an_empty_log)
{
	long n;

	ASSERT_EQ(0, become_master());
	setup_buffers();
	EXPECT_EQ(0, run_counted(a_fresh_log, &n));
	if (n >= 0)
		EXPECT_LE(1, n);
}

TEST(resnap_copies_pages_the_caller_rewrites)
{
	long n;

	ASSERT_EQ(0, become_master());
	setup_buffers();
	EXPECT_EQ(0, run_counted(a_copied, &n));
	if (n >= 0)
		EXPECT_LE(10, n);
}

TEST(resnap_leaves_the_except_range_out)
{
	long n;

	ASSERT_EQ(0, become_master());
	setup_buffers();
	EXPECT_EQ(0, run_counted(a_except, &n));
	if (n >= 0)
		EXPECT_LE(6, n);
}

TEST(resnap_follows_new_mappings)
{
	struct det_status st;
	long r;

	ASSERT_EQ(0, become_master());
	setup_buffers();
	r = dput(1, DET_SNAP | DET_START, 0, 0, 0);
	if (r == 0)
		det_exit(a_new_mapping());
	ASSERT_EQ(DET_S_RUNNING, r);
	ASSERT_EQ(DET_S_READY, det_status(1, &st));
	ASSERT_EQ(DET_S_READY, dput(1, DET_VM_ZERO | DET_PROT_READ |
				    DET_PROT_WRITE, (unsigned long)extra,
				    4 * PG, 0));
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1, &st));
	EXPECT_EQ(0, st.exit_code);
	EXPECT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

TEST(resnap_takes_huge_pages)
{
	struct det_status st;
	long thp, before, after, r;
	unsigned char *m;

	ASSERT_EQ(0, become_master());
	setup_buffers();
	m = mmap(NULL, 3 * HUGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, m);
	hwin = (unsigned char *)(((unsigned long)m + HUGE - 1) & ~(HUGE - 1));
	ASSERT_EQ(0, madvise(hwin, 2 * HUGE, MADV_HUGEPAGE));
	thp = meminfo_kb("AnonHugePages");
	before = det_debugfs_count("resnaps");
	r = dput(1, DET_START, 0, 0, 0);
	if (r == 0)
		det_exit(a_huge());
	ASSERT_EQ(DET_S_RUNNING, r);
	ASSERT_EQ(DET_S_READY, det_status(1, &st));
	/* A's first window is one huge page, which B shares. */
	EXPECT_LE(thp + 2048, meminfo_kb("AnonHugePages"));
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_EXIT_NORMAL, det_status(1, &st));
	EXPECT_EQ(0, st.exit_code);
	after = det_debugfs_count("resnaps");
	/* In place, every round: a huge page is no reason for a new copy. */
	if (before >= 0)
		EXPECT_LE(before + 12, after);
	EXPECT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

/*
 * Run a_cycles() in A, reading at its two stops free memory plus slab (a
 * KASAN kernel's quarantine of freed objects moves memory from the first
 * to the second, leaked pages from both) into @kb and the page tables'
 * size into @pt: A's exit status, or -1 if a step went wrong.
 */
static int __attribute__((noinline)) cycles_with_readings(long kb[2],
							   long pt[2])
{
	struct det_status st;
	int i;

	if (dput(1, DET_SNAP | DET_START, 0, 0, 0) == 0)
		det_exit(a_cycles());
	for (i = 0; i < 2; i++) {
		if (det_status(1, &st) != DET_S_READY)
			return -1;
		kb[i] = meminfo_kb("MemFree") + meminfo_kb("Slab");
		pt[i] = meminfo_kb("PageTables");
		if (dput(1, DET_START, 0, 0, 0) != DET_S_RUNNING)
			return -1;
	}
	if (det_status(1, &st) != DET_S_EXIT_NORMAL)
		return -1;
	dput(1, DET_KILL, 0, 0, 0);
	return st.exit_code;
}

SLOW_TEST(resnap_cycles_free_what_they_replace, 120)
{
	long kb[2], pt[2];

	ASSERT_EQ(0, become_master());
	setup_buffers();
	EXPECT_EQ(0, cycles_with_readings(kb, pt));
	/*
	 * 6000 cycles replace 32 pages each (750 MB).  Free memory moves by
	 * up to 30 MB either way with the per-CPU page lists; a reference
	 * kept on every replaced page of one side would take 375 MB.
	 */
	TH_LOG("MemFree + Slab %ld -> %ld kB, PageTables %ld -> %ld kB",
	       kb[0], kb[1], pt[0], pt[1]);
	EXPECT_LT(kb[0] - kb[1], 65536);
	EXPECT_LT(pt[1] - pt[0], 1024);
}

TEST_HARNESS_MAIN
