// SPDX-License-Identifier: GPL-2.0
/*
 * Create/kill cycles leak nothing.
 *
 * Measured from /proc/meminfo (SUnreclaim, Slab, KernelStack, PageTables)
 * and the number of processes in /proc, after a warm-up round so caches are
 * populated: of two measured rounds of 1,000 cycles each, at least one
 * must not grow the unreclaimable slab by more than 128 KiB, and both
 * together by no more than 1 MiB (a leaked struct det_proc alone is ~200
 * bytes, so 1,000 of them would show in every round, where a cache
 * settling on a new plateau shows in one; a leaked task would show as
 * kernel stacks and page tables), and they must leave exactly the
 * processes that were there before.
 *
 * On a KASAN kernel (the debug profile) freed objects sit in KASAN's
 * quarantine, so slab counters grow without a leak: there the test checks
 * instead that the count of live struct det_proc objects (debugfs
 * det/objects) returns exactly to its baseline, and kmemleak (also in the
 * debug profile) reports any object the kernel lost track of.
 */

#include "det_test.h"

/*
 * Cycles per round.  1,000 make a leaked struct det_proc (~200 bytes)
 * show as ~200 KiB of unreclaimable slab, above the 128 KiB allowed for
 * noise.  On KASAN the check is exact instead (the live object count must
 * return to its baseline, and kmemleak reports a lost object), so one
 * leaked object in any cycle fails it: 100 cycles, each of the five kinds
 * 20 times, catch the same leaks at a tenth of the cost.
 */
#define CYCLES_PLAIN 1000
#define CYCLES_KASAN 100

static void __attribute__((noreturn)) spin(void)
{
	for (;;)
		;
}

/* One create/kill cycle of kind @i % 5. */
static int cycle(long i)
{
	long r;

	switch (i % 5) {
	case 0:	/* created, never started, killed */
		r = dput(1, 0, 0, 0, 0);
		if (r == 0)
			det_exit(0);
		return r == DET_S_READY && !dput(1, DET_KILL, 0, 0, 0) ? 0 : 1;
	case 1:	/* runs to exit, reaped */
		r = dput(1, DET_START, 0, 0, 0);
		if (r == 0)
			det_exit(3);
		return dget(1, 0, 0, 0, 0) == DET_S_EXIT_NORMAL &&
		       !dput(1, DET_KILL, 0, 0, 0) ? 0 : 2;
	case 2:	/* running, killed without waiting */
		r = dput(1, DET_START, 0, 0, 0);
		if (r == 0)
			spin();
		return !dput(1, DET_KILL | DET_KILL_POISON, 0, 0, 0) ? 0 : 3;
	case 3:	/* faults on a forbidden syscall, then killed */
		r = dput(1, DET_START, 0, 0, 0);
		if (r == 0)
			det_raw5(__NR_getpid, 0, 0, 0, 0, 0);
		return dget(1, 0, 0, 0, 0) == DET_S_EXCEPT &&
		       !dput(1, DET_KILL, 0, 0, 0) ? 0 : 4;
	default: /* with a running grandchild, killed from the top */
		r = dput(1, DET_START, 0, 0, 0);
		if (r == 0) {
			if (dput(1, DET_START, 0, 0, 0) == 0)
				spin();
			dret();
			spin();
		}
		return dget(1, 0, 0, 0, 0) == DET_S_READY &&
		       !dput(1, DET_KILL, 0, 0, 0) ? 0 : 5;
	}
}

struct counters {
	long sunreclaim, slab, kstack, ptables, procs;
};

static void sample(struct counters *c)
{
	long prev, now = meminfo_kb("SUnreclaim");
	int i;

	/*
	 * Let RCU-deferred frees (task structs, stacks) finish: wait until
	 * the unreclaimable slab stops shrinking, not for a fixed time, which
	 * a loaded host or a debug kernel can outlast.
	 */
	for (i = 0; i < 100; i++) {
		usleep(i < 3 ? 100000 : 200000);
		prev = now;
		now = meminfo_kb("SUnreclaim");
		if (i >= 2 && now >= prev)
			break;
	}
	c->sunreclaim = meminfo_kb("SUnreclaim");
	c->slab = meminfo_kb("Slab");
	c->kstack = meminfo_kb("KernelStack");
	c->ptables = meminfo_kb("PageTables");
	c->procs = count_processes();
}

SLOW_TEST(create_kill_cycles, 300)
{
	struct counters base, mid, end;
	long objs_base, objs = -1;
	bool kasan = det_kernel_has_kasan();
	long cycles = kasan ? CYCLES_KASAN : CYCLES_PLAIN;
	double t0;
	long i;

	objs_base = det_debugfs_count("objects");
	ASSERT_EQ(0, become_master());
	for (i = 0; i < cycles; i++)
		ASSERT_EQ(0, cycle(i));
	sample(&base);
	ASSERT_LT(0, base.sunreclaim);

	t0 = now_us();
	for (i = 0; i < cycles; i++)
		ASSERT_EQ(0, cycle(i));
	printf("# %ld create/kill cycles: %.0f us per cycle\n", cycles,
	       (now_us() - t0) / cycles);
	sample(&mid);
	for (i = 0; i < cycles; i++)
		ASSERT_EQ(0, cycle(i));
	sample(&end);

	printf("# kB before/after %ld/after %ld cycles: SUnreclaim %ld/%ld/%ld Slab %ld/%ld/%ld KernelStack %ld/%ld/%ld PageTables %ld/%ld/%ld\n",
	       cycles, 2 * cycles,
	       base.sunreclaim, mid.sunreclaim, end.sunreclaim,
	       base.slab, mid.slab, end.slab,
	       base.kstack, mid.kstack, end.kstack,
	       base.ptables, mid.ptables, end.ptables);
	EXPECT_EQ(base.procs, mid.procs);
	EXPECT_EQ(base.procs, end.procs);
	if (objs_base >= 0) {
		/* The master's own object, nothing else; RCU may lag. */
		for (i = 0; i < 50; i++) {
			objs = det_debugfs_count("objects");
			if (objs == objs_base + 1)
				break;
			usleep(100000);
		}
		printf("# live det objects: %ld before, %ld after %ld cycles (master's own: 1)\n",
		       objs_base, objs, 3 * cycles);
		EXPECT_EQ(objs_base + 1, objs);
	}
	if (kasan) {
		printf("# KASAN kernel: slab counters include its quarantine, not checked\n");
		ASSERT_LE(0, objs_base);
	} else {
		/*
		 * A leak grows it in both rounds; a slab cache that settles
		 * on a new plateau (one jump of 100-300 kB has been seen,
		 * in either round) in one only.
		 */
		long grew1 = mid.sunreclaim - base.sunreclaim;
		long grew2 = end.sunreclaim - mid.sunreclaim;

		EXPECT_GE(128, grew1 < grew2 ? grew1 : grew2);
		EXPECT_GE(1024, end.sunreclaim - base.sunreclaim);
	}
	EXPECT_GE(64, end.kstack - base.kstack);
	EXPECT_GE(64, end.ptables - base.ptables);
}

TEST_HARNESS_MAIN
