// SPDX-License-Identifier: GPL-2.0-only
/*
 * Deterministic process groups: where a group's time goes.
 *
 * Each memory operation of dput()/dget() (creation and DET_SNAP, DET_MERGE,
 * DET_VM_COPY/ZERO/PERM, DET_KILL) adds its duration to the group's
 * master, found by walking up the real parents: a deterministic process's
 * real parent is the process that created it, and every ancestor up to the
 * master is deterministic.  The figures are never given to a deterministic
 * process: only a master may read them (DET_GET_TIMES), so they cannot
 * make a deterministic result depend on timing.
 */

#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>

#include "internal.h"

/*
 * Adds the time since @start_ns (ktime_get_ns()) to @kind of the caller's
 * master, and counts the call.  Nothing for a legacy caller.
 */
void det_account(enum det_time_kind kind, u64 start_ns)
{
	u64 ns = ktime_get_ns() - start_ns;
	struct task_struct *t;
	struct det_proc *d;
	int depth = 0;

	rcu_read_lock();
	for (t = current; t; t = rcu_dereference(t->real_parent)) {
		d = READ_ONCE(t->det);
		/*
		 * A legacy ancestor ends the walk: this group has no master
		 * left (it is being torn down).  The depth bound keeps a
		 * broken chain from looping.
		 */
		if (!d || ++depth > 4096)
			break;
		if (d->master) {
			atomic64_add(ns, &d->times[kind]);
			atomic64_inc(&d->times[DET_T_CALLS]);
			break;
		}
		if (t == t->real_parent)
			break;
	}
	rcu_read_unlock();
}

/* DET_GET_TIMES: the caller's (a master's) figures to @buf. */
int det_get_times(struct det_proc *me, unsigned long buf)
{
	struct det_times out;

	BUILD_BUG_ON(sizeof(out) != DET_TIMES_SIZE);
	BUILD_BUG_ON(ARRAY_SIZE(me->times) * sizeof(u64) != sizeof(out));
	out.snap_ns = atomic64_read(&me->times[DET_T_SNAP]);
	out.merge_ns = atomic64_read(&me->times[DET_T_MERGE]);
	out.copy_ns = atomic64_read(&me->times[DET_T_COPY]);
	out.kill_ns = atomic64_read(&me->times[DET_T_KILL]);
	out.calls = atomic64_read(&me->times[DET_T_CALLS]);
	if (copy_to_user((void __user *)buf, &out, sizeof(out)))
		return -EFAULT;
	return 0;
}
