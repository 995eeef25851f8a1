// SPDX-License-Identifier: GPL-2.0-only
/*
 * Deterministic process groups: the dput(), dget() and dret() system calls.
 *
 * Checks run in a fixed order, so the error a caller gets when several
 * arguments are wrong is defined (tools/testing/selftests/det/ pins it):
 *
 *   1. -EINVAL       unknown flag bits, an operation the call does not
 *                    have, more than one operation (but DET_SNAP with
 *                    DET_REGS), op-flags the operation does not take,
 *                    DET_START with an operation that has no child to
 *                    start, nonzero unused arguments, a size that does not
 *                    match the operation, a memory range that is unaligned
 *                    where it must not be or not all in user space;
 *   2. -EPERM/-EACCES/-EBUSY  the caller's role;
 *   3. -ESRCH/-ECHILD/-ENODATA  the child;
 *   4. -EINTR        the wait for the child to stop;
 *   5. the operation's own errors (memory.c, merge.c: -EFAULT, -ENOMEM,
 *      -EBADE).
 */

#include <linux/mman.h>
#include <linux/syscalls.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>

#include "internal.h"

#define DET_OP_MASK		0x0000ffffUL
#define DET_OPFLAG_MASK		0x00ff0000UL

#define DET_PUT_OPS	(DET_REGS | DET_BECOME_MASTER | DET_GET_STATUS | \
			 DET_KILL | DET_ALLOW_SIGNALS | DET_VM_ZERO | \
			 DET_VM_COPY | DET_SNAP | DET_PERM)
#define DET_GET_OPS	(DET_REGS | DET_GET_STATUS | DET_VM_COPY | DET_MERGE | \
			 DET_GET_TIMES)
#define DET_PROT_MASK	(DET_PROT_READ | DET_PROT_WRITE | DET_PROT_EXEC)
/* The op-flags of DET_SNAP whose ranges are at @dststart. */
#define DET_SNAP_RANGES	(DET_SNAP_EXCEPT | DET_SNAP_GIVE)

static unsigned long det_opflags_allowed(unsigned long op)
{
	unsigned long snap = op & DET_SNAP ? DET_SNAP_RANGES : 0;

	switch (op & ~DET_SNAP) {	/* DET_SNAP | DET_REGS: both's */
	case DET_REGS:
		return snap | DET_GENERAL_REGS | DET_FP_REGS |
		       (det_xstate_size() ? DET_XSTATE_REGS : 0);
	case DET_GET_STATUS:
		return DET_DONT_WAIT;
	case DET_KILL:
		return DET_KILL_POISON | DET_KILL_NOWAIT;
	case DET_VM_ZERO:
	case DET_PERM:
		return DET_PROT_MASK;
	case DET_VM_COPY:
		/* Taken and ignored, as v3.0-det did: the copy never maps. */
		return DET_PROT_MASK;
	case DET_MERGE:
		return DET_MERGE_ARGS;
	}
	return snap;
}

/* PROT_* from the DET_PROT_* op-flags. */
static unsigned long det_prot(unsigned long flags)
{
	BUILD_BUG_ON(DET_PROT_READ >> 16 != PROT_READ ||
		     DET_PROT_WRITE >> 16 != PROT_WRITE ||
		     DET_PROT_EXEC >> 16 != PROT_EXEC);
	return (flags & DET_PROT_MASK) >> 16;
}

/* Does [start, start+size) lie in user space? */
static bool det_range_ok(unsigned long start, unsigned long size)
{
	return size <= TASK_SIZE_MAX && start <= TASK_SIZE_MAX - size;
}

static bool det_page_range_ok(unsigned long start, unsigned long size)
{
	return det_range_ok(start, size) && PAGE_ALIGNED(start) &&
	       PAGE_ALIGNED(size);
}

/* One range of DET_SNAP_EXCEPT or DET_SNAP_GIVE, checked. */
static int det_snap_range_ok(const struct det_range *r)
{
	if (!det_page_range_ok(r->start, r->size))
		return -EINVAL;
	return det_snap_except_ok(r);
}

/*
 * The ranges at @uaddr, read and checked: DET_SNAP_EXCEPT's one, or
 * DET_SNAP_GIVE's two (left out, handed over), which may not overlap.
 */
static int det_snap_ranges_get(unsigned long flags, unsigned long uaddr,
			       struct det_range r[2])
{
	unsigned int n = flags & DET_SNAP_GIVE ? 2 : 1;
	int ret;

	r[1] = (struct det_range){ };
	if (copy_from_user(r, (void __user *)uaddr, n * sizeof(*r)))
		return -EFAULT;
	ret = det_snap_range_ok(&r[0]);
	if (!ret)
		ret = det_snap_range_ok(&r[1]);
	if (!ret && r[0].size && r[1].size &&
	    r[0].start < r[1].start + r[1].size &&
	    r[1].start < r[0].start + r[0].size)
		ret = -EINVAL;
	return ret;
}

/* Step 1 of the check order: the arguments alone. */
static int det_check_args(bool put, unsigned long child, unsigned long flags,
			  unsigned long start, unsigned long size,
			  unsigned long dststart)
{
	unsigned long ops = put ? DET_PUT_OPS : DET_GET_OPS;
	unsigned long op = flags & DET_OP_MASK;
	unsigned long opf = flags & DET_OPFLAG_MASK;

	if (flags & ~(ops | DET_OPFLAG_MASK | DET_START))
		return -EINVAL;
	if ((op & (op - 1)) && op != (DET_SNAP | DET_REGS))
		return -EINVAL;
	if (opf & ~det_opflags_allowed(op))
		return -EINVAL;
	if ((op & DET_REGS) && !(opf & ~DET_SNAP_RANGES))
		return -EINVAL;
	/* DET_SNAP's ranges are at @dststart, which is 0 otherwise. */
	if ((op & DET_SNAP) && !dststart != !(opf & DET_SNAP_RANGES))
		return -EINVAL;
	if ((flags & DET_START) &&
	    (op & (DET_BECOME_MASTER | DET_ALLOW_SIGNALS | DET_KILL |
		   DET_GET_TIMES)))
		return -EINVAL;

	switch (op) {
	case DET_BECOME_MASTER:
		if (child || start || size || dststart)
			return -EINVAL;
		break;
	case DET_ALLOW_SIGNALS:
		if (child || size != sizeof(sigset_t) || dststart)
			return -EINVAL;
		break;
	case DET_REGS:
		/* dget() size query: no child, no buffer. */
		if (!put && !start && !size) {
			if (child || dststart || (flags & DET_START))
				return -EINVAL;
			break;
		}
		fallthrough;
	case DET_SNAP | DET_REGS:
		/* @size 0: the selected sets' size, as v3.0-det took it. */
		if ((size ? size != det_regs_size(flags) : !start) ||
		    (dststart && op != (DET_SNAP | DET_REGS)))
			return -EINVAL;
		break;
	case DET_GET_STATUS:
		if ((start ? size != sizeof(struct det_status) : size) ||
		    dststart)
			return -EINVAL;
		break;
	case DET_VM_ZERO:
	case DET_PERM:
		if (!det_page_range_ok(start, size) || dststart)
			return -EINVAL;
		break;
	case DET_VM_COPY:
		if (!det_range_ok(start, size) ||
		    !det_range_ok(dststart, size) ||
		    !PAGE_ALIGNED(dststart - start))
			return -EINVAL;
		break;
	case DET_GET_TIMES:
		if (child || !start || size != sizeof(struct det_times) ||
		    dststart)
			return -EINVAL;
		break;
	case DET_MERGE:
		if (flags & DET_MERGE_ARGS) {
			/* @start: a struct det_merge_args of @size bytes. */
			if (!start || size < DET_MERGE_ARGS_SIZE_VER0 ||
			    size > PAGE_SIZE || dststart)
				return -EINVAL;
			break;
		}
		/* @dststart is the report pointer. */
		if (!det_range_ok(start, size))
			return -EINVAL;
		break;
	case DET_SNAP:
		if (start || size)
			return -EINVAL;
		break;
	default: /* DET_KILL, or no operation */
		if (start || size || dststart)
			return -EINVAL;
	}
	return 0;
}

/* Step 2: the caller's role, for everything but DET_BECOME_MASTER. */
static int det_check_caller(struct det_proc *me, unsigned long flags)
{
	unsigned long op = flags & DET_OP_MASK;

	if (!me)
		return -EPERM;
	if (!me->master &&
	    (op == DET_ALLOW_SIGNALS || op == DET_GET_TIMES ||
	     (op == DET_GET_STATUS && (flags & DET_DONT_WAIT))))
		return -EACCES;
	return 0;
}

/*
 * DET_GET_STATUS, through dput() or dget(): wait for child @d to stop
 * (unless %DET_DONT_WAIT), write its struct det_status to @start if not 0.
 */
static long det_status_op(struct det_proc *me, struct det_proc *d,
			  unsigned long flags, unsigned long start)
{
	struct det_status st;
	long ret;

	BUILD_BUG_ON(sizeof(struct det_status) != DET_STATUS_SIZE);
	if (!d)
		return -ESRCH;
	if (!(flags & DET_DONT_WAIT)) {
		ret = det_wait_stopped(me, d);
		if (ret)
			return ret;
	}
	det_get_status(d, &st);
	if (start && copy_to_user((void __user *)start, &st, sizeof(st)))
		return -EFAULT;
	if (flags & DET_START)
		return det_start(d) ?: DET_S_RUNNING;
	return st.status;
}

static long det_set_allowed(struct det_proc *me, unsigned long start)
{
	sigset_t set;

	if (copy_from_user(&set, (void __user *)start, sizeof(set)))
		return -EFAULT;
	sigdelsetmask(&set, sigmask(SIGKILL) | sigmask(SIGSTOP));
	me->allowed = set;
	return 0;
}

/**
 * sys_dput - push state into a child, creating it on first use
 * @child:	the child's ID, chosen by the caller; IDs are per parent.
 * @flags:	at most one operation, its op-flags, and %DET_START:
 *		0 - no operation (create the child if needed, wait for it);
 *		%DET_REGS - set the child's registers from @start (@size
 *		bytes: struct user_regs_struct for %DET_GENERAL_REGS, then
 *		struct user_fpregs_struct for %DET_FP_REGS, then the XSAVE
 *		area for %DET_XSTATE_REGS, whichever are selected; @size
 *		0 means their total, as in v3.0-det);
 *		%DET_GET_STATUS - as for dget() (v3.0-det took it here too);
 *		an unused @child is not created;
 *		%DET_KILL - destroy the child and its subtree
 *		(%DET_KILL_POISON: without waiting for it to stop);
 *		%DET_BECOME_MASTER - make the calling legacy process a master
 *		(@child, @start, @size, @dststart must be 0); a master
 *		stays one (0);
 *		%DET_ALLOW_SIGNALS - masters: @start points at a kernel
 *		sigset_t (@size == %DET_SIGSET_SIZE) of signals that may
 *		interrupt the master's waits, @child must be 0;
 *		%DET_VM_ZERO | prot - fresh zero pages (prot 0: unmap) over
 *		the child's page-aligned [@start, @start+@size);
 *		%DET_PERM | prot - protection of that range;
 *		%DET_VM_COPY - caller's [@start, @start+@size) to the
 *		child's @dststart (a page multiple away); %DET_PROT_* op-flags
 *		are ignored, as in v3.0-det (the copy never maps);
 *		%DET_SNAP - the child's address space := a copy-on-write
 *		copy of the caller's, and a reference copy for %DET_MERGE;
 *		may be combined with %DET_REGS (then @start/@size are the
 *		register buffer, set after the snapshot); %DET_SNAP_EXCEPT:
 *		@dststart points at a struct det_range the snapshot leaves
 *		out (the child's copy and its reference read zeros there);
 *		%DET_SNAP_GIVE: at two, that one (size 0: none) and one
 *		handed to the child (its copy holds the caller's bytes, its
 *		reference zeros, the caller's mapping is emptied).
 *		%DET_START - after the operation, set the child running.
 * @start:	user address, as the operation requires; otherwise 0.
 * @size:	byte count, as the operation requires; otherwise 0.
 * @dststart:	%DET_VM_COPY's destination in the child, %DET_SNAP_EXCEPT's
 *		or %DET_SNAP_GIVE's ranges; otherwise 0.
 *
 * The first dput() to an unused @child (other than %DET_KILL) creates it
 * like fork(): a copy-on-write image of the caller's memory and its
 * registers at this call.  It starts stopped; when first started, its
 * dput() returns 0.  On an existing child, dput() first waits until the
 * child stops (dret(), a fault, a forbidden system call, or exit).
 *
 * Return: the child's status (%DET_S_READY ... %DET_S_EXCEPT_DEAD) after the
 * operation; 0 for %DET_BECOME_MASTER, %DET_ALLOW_SIGNALS and %DET_KILL;
 * 0 in a new child when first started.  Errors, in the order checked:
 *
 * - %EINVAL: unknown bit in @flags, %DET_MERGE (dget only), more than one
 *   operation, an op-flag the operation does not take
 *   (%DET_XSTATE_REGS on a CPU without XSAVE), %DET_REGS without a register
 *   set, %DET_START with %DET_BECOME_MASTER, %DET_ALLOW_SIGNALS or
 *   %DET_KILL, an unused argument not 0, or @size not what the operation
 *   needs (%DET_REGS with @start and @size 0, the dget() size query, is
 *   not a dput() operation; %DET_REGS with @size 0 needs a buffer);
 * - %EINVAL: a memory range not page-aligned (%DET_VM_ZERO, %DET_PERM) or
 *   a page multiple apart (%DET_VM_COPY), or not all in user space;
 * - %EACCES: %DET_BECOME_MASTER or %DET_ALLOW_SIGNALS from a deterministic
 *   process;
 * - %EBUSY: %DET_BECOME_MASTER from a process with other threads, with
 *   children (live or zombie), or whose address space another process
 *   shares or has shared (clone(CLONE_VM), vfork());
 * - %EOPNOTSUPP: %DET_BECOME_MASTER from a process with hugetlb or KSM
 *   mappings, or on a kernel booted with ia32_emulation=0;
 * - %EPERM: any other operation from a legacy process;
 * - %EFAULT: %DET_SNAP_EXCEPT's or %DET_SNAP_GIVE's struct det_range is
 *   not readable;
 * - %EINVAL: a range is not page-aligned, not all in user space, or not
 *   all private anonymous memory or unmapped in the caller, or the two
 *   overlap;
 * - %ESRCH: %DET_KILL or %DET_GET_STATUS on an unused @child;
 * - %ECHILD: %DET_REGS or %DET_START on a child that has exited;
 * - %EAGAIN, %ENOMEM: creating the child failed (process limits, memory);
 * - %EPERM: creating a child, or %DET_SNAP, while the caller has a sealed
 *   (mseal()) vDSO, vvar, shared or device mapping, which the child could
 *   not drop;
 * - %EINTR: a master's wait was interrupted by a signal it allowed, or the
 *   caller is being killed; the operation was not performed;
 * - %ECHILD: a memory operation on a child that has exited (one that died
 *   of a signal also while the copy runs: its memory is freed at death);
 * - %EFAULT: @start (%DET_REGS, %DET_ALLOW_SIGNALS) is not readable or
 *   (%DET_GET_STATUS) not writable; a %DET_VM_COPY range is not mapped;
 * - %ENOMEM: %DET_PERM over unmapped pages, or out of memory;
 * - %EIO, %EINVAL from %DET_REGS: register values the child cannot take
 *   (bad segment selector, reserved MXCSR bits, an XSAVE header that
 *   PTRACE_SETREGSET with NT_X86_XSTATE would refuse).
 */
SYSCALL_DEFINE5(dput, unsigned long, child, unsigned long, flags,
		unsigned long, start, unsigned long, size,
		unsigned long, dststart)
{
	struct det_proc *me = current->det;
	unsigned long op = flags & DET_OP_MASK;
	struct det_range ranges[2];
	bool created = false;
	struct det_proc *d;
	u64 t0;
	long ret;

	ret = det_check_args(true, child, flags, start, size, dststart);
	if (ret)
		return ret;
	if (op == DET_BECOME_MASTER)
		return det_become_master();
	ret = det_check_caller(me, flags);
	if (ret)
		return ret;
	if (op == DET_ALLOW_SIGNALS)
		return det_set_allowed(me, start);
	if ((op & DET_REGS) && !size)
		size = det_regs_size(flags);
	/* Read and checked before any child is created or waited for. */
	if (flags & DET_SNAP_RANGES) {
		ret = det_snap_ranges_get(flags, dststart, ranges);
		if (ret)
			return ret;
	}

	d = xa_load(&me->children, child);
	if (op == DET_GET_STATUS)
		return det_status_op(me, d, flags, start);
	if (op == DET_KILL) {
		if (!d)
			return -ESRCH;
		if (!(flags & DET_KILL_POISON)) {
			ret = det_wait_stopped(me, d);
			if (ret)
				return ret;
		}
		t0 = ktime_get_ns();
		ret = det_kill(me, d, flags & DET_KILL_NOWAIT);
		det_account(DET_T_KILL, t0);
		return ret;
	}

	/* Step 3: the child.  Creating one counts as a snapshot. */
	if (!d) {
		t0 = ktime_get_ns();
		d = det_create(me, child, (op & ~DET_REGS) == DET_SNAP);
		if (IS_ERR(d))
			return PTR_ERR(d);
		created = true;
	} else {
		ret = det_wait_stopped(me, d);
		if (ret)
			return ret;
		t0 = ktime_get_ns();
	}

	ret = 0;
	switch (op & ~DET_REGS) {
	case DET_SNAP:
		ret = det_snap(d, created,
			       flags & DET_SNAP_RANGES ? ranges : NULL);
		det_account(DET_T_SNAP, t0);
		break;
	case DET_VM_ZERO:
	case DET_PERM:
		ret = det_vm_map(d, op == DET_VM_ZERO, start, size,
				 det_prot(flags));
		det_account(DET_T_COPY, t0);
		break;
	case DET_VM_COPY:
		ret = det_vm_copy(d, true, start, size, dststart);
		det_account(DET_T_COPY, t0);
		break;
	default:
		/* Creating a child copies the caller's address space. */
		if (created)
			det_account(DET_T_SNAP, t0);
	}
	if (ret)
		return ret;
	if (op & DET_REGS) {
		ret = det_regs(d, true, flags, (void __user *)start, size);
		if (ret)
			return ret;
	}
	if (flags & DET_START)
		return det_start(d) ?: DET_S_RUNNING;
	return det_state(d);
}

/**
 * sys_dget - pull state out of a stopped child
 * @child:	the child's ID.
 * @flags:	at most one operation, its op-flags, and %DET_START:
 *		0 - no operation (wait for the child to stop);
 *		%DET_REGS - copy the child's registers to @start (layout as
 *		for dput()); with @child, @start, @size and @dststart all 0
 *		and no %DET_START, return the buffer size in bytes for the
 *		selected sets instead (the %DET_XSTATE_REGS size depends on
 *		the CPU);
 *		%DET_GET_STATUS - if @start is not 0, write a struct
 *		det_status there (@size == sizeof(struct det_status)), else
 *		@size must be 0; %DET_DONT_WAIT (masters only): do not wait
 *		for a running child, report %DET_S_RUNNING;
 *		%DET_VM_COPY - the child's [@dststart, @dststart+@size)
 *		to the caller's @start (a page multiple away): @start is
 *		the caller's address for dput() and dget() alike;
 *		%DET_MERGE - three-way merge of the child's changes since
 *		its snapshot in [@start, @start+@size) into the caller;
 *		@dststart: a struct det_merge report, or 0.  With
 *		%DET_MERGE_ARGS: @start is a struct det_merge_args of @size
 *		bytes (several ranges merged all or nothing, a report of
 *		any size) and @dststart 0.
 *		%DET_GET_TIMES (masters only) - with @child 0, write the
 *		group's struct det_times to @start (@size == its size); no
 *		child, no wait.
 *		%DET_START - after the operation, set the child running.
 * @start:	user address, as the operation requires; otherwise 0.
 * @size:	byte count, as the operation requires; otherwise 0.
 * @dststart:	%DET_VM_COPY's source in the child, %DET_MERGE's report;
 *		else 0.
 *
 * dget() first waits until the child stops (dret(), a fault, a forbidden
 * system call, or exit), unless %DET_DONT_WAIT.
 *
 * Return: the child's status (%DET_S_READY ... %DET_S_EXCEPT_DEAD) after the
 * operation; for the %DET_REGS size query, the size.  Errors, in the order
 * checked:
 *
 * - %EINVAL: unknown bit in @flags, a put-only operation, more than one
 *   operation, an op-flag the operation does not take (%DET_XSTATE_REGS on
 *   a CPU without XSAVE), %DET_REGS without a register set, an unused
 *   argument not 0 (@child in the size query), %DET_START with the size
 *   query, or @size not what the operation needs (for %DET_MERGE_ARGS:
 *   less than %DET_MERGE_ARGS_SIZE_VER0 or more than a page);
 * - %EPERM: the caller is a legacy process;
 * - %EACCES: %DET_DONT_WAIT or %DET_GET_TIMES from a deterministic process;
 * - %ESRCH: no child @child;
 * - %ECHILD: %DET_REGS or %DET_START on a child that has exited;
 * - %EINTR: a master's wait was interrupted by a signal it allowed, or the
 *   caller is being killed;
 * - %ECHILD: %DET_VM_COPY or %DET_MERGE on a child that died of a signal
 *   (before or during the operation): its memory was freed when it died;
 * - %E2BIG: a struct det_merge_args larger than the kernel's, with bytes
 *   past its end not 0;
 * - %EINVAL: a struct det_merge_args with no ranges or more than
 *   %DET_MERGE_MAX_RANGES, ranges out of order or sharing a page, a range
 *   outside user space, a report without a size or a size without one;
 * - %ENODATA: %DET_MERGE on a child without a snapshot;
 * - %EFAULT: @start is not writable; a %DET_VM_COPY range is not mapped;
 *   the struct det_merge_args or its ranges are not readable;
 *   %DET_MERGE: the caller no longer maps (writably) a page the child
 *   changed, or the report is not writable;
 * - %EBADE (%DET_E_CONFLICT): %DET_MERGE found bytes both sides changed
 *   differently; nothing was merged (docs/det-merge.7.md).
 */
SYSCALL_DEFINE5(dget, unsigned long, child, unsigned long, flags,
		unsigned long, start, unsigned long, size,
		unsigned long, dststart)
{
	struct det_proc *me = current->det;
	unsigned long op = flags & DET_OP_MASK;
	struct det_proc *d;
	u64 t0;
	long ret;

	BUILD_BUG_ON(sizeof(sigset_t) != DET_SIGSET_SIZE);

	ret = det_check_args(false, child, flags, start, size, dststart);
	if (ret)
		return ret;
	ret = det_check_caller(me, flags);
	if (ret)
		return ret;
	if (op == DET_REGS && !start && !size)
		return det_regs_size(flags);
	if (op == DET_GET_TIMES)
		return det_get_times(me, start);
	if (op == DET_REGS && !size)
		size = det_regs_size(flags);

	d = xa_load(&me->children, child);
	if (op == DET_GET_STATUS)
		return det_status_op(me, d, flags, start);
	if (!d)
		return -ESRCH;
	ret = det_wait_stopped(me, d);
	if (ret)
		return ret;

	if (op == DET_REGS) {
		ret = det_regs(d, false, flags, (void __user *)start, size);
		if (ret)
			return ret;
	}
	if (op == DET_VM_COPY) {
		t0 = ktime_get_ns();
		ret = det_vm_copy(d, false, start, size, dststart);
		det_account(DET_T_COPY, t0);
		if (ret)
			return ret;
	}
	if (op == DET_MERGE) {
		t0 = ktime_get_ns();
		ret = det_merge_call(d, flags, start, size, dststart);
		det_account(DET_T_MERGE, t0);
		if (ret)
			return ret;
	}
	if (flags & DET_START)
		return det_start(d) ?: DET_S_RUNNING;
	return det_state(d);
}

/**
 * sys_dret - stop and wait for the parent
 *
 * The calling deterministic process stops with status %DET_S_READY; its
 * parent's pending dput()/dget() returns.  dret() returns when the parent
 * starts it again, with the value of rax at that point (0 unless the parent
 * changed it with %DET_REGS).
 *
 * Return: 0 (or what the parent put in rax).  Errors:
 *
 * - %EPERM: the caller is a legacy process or a master.
 */
SYSCALL_DEFINE0(dret)
{
	struct det_proc *me = current->det;
	struct pt_regs *regs = current_pt_regs();

	if (!me || me->master)
		return -EPERM;
	regs->ax = 0;
	det_stop(me, DET_S_READY, DET_R_DRET, 0, 0, 0, -1);
	return regs->ax;
}
