// SPDX-License-Identifier: GPL-2.0-only
/*
 * Deterministic process groups: DET_REGS.
 *
 * The user buffer holds, in this order, the general registers (struct
 * user_regs_struct, DET_GENERAL_REGS), the x87/SSE state in FXSAVE format
 * (struct user_fpregs_struct, DET_FP_REGS) and the whole extended state in
 * XSAVE standard format (DET_XSTATE_REGS), whichever are selected.  They go
 * through the same regsets as ptrace(PTRACE_GETREGS/SETREGS),
 * PTRACE_GETFPREGS/SETFPREGS and PTRACE_GETREGSET/SETREGSET with
 * NT_X86_XSTATE, so a put is validated the same way (segment selectors,
 * reserved MXCSR bits, the XSAVE header).
 */

#include <linux/elf.h>
#include <linux/regset.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <asm/fpu/types.h>
#include <asm/fpu/xstate.h>
#include <asm/user.h>

#include "internal.h"

static int det_regset(const struct user_regset_view *view, unsigned int note)
{
	unsigned int i;

	for (i = 0; i < view->n; i++)
		if (view->regsets[i].core_note_type == note)
			return i;
	return -1;
}

/*
 * Size of the NT_X86_XSTATE regset: fpu_user_cfg.max_size with XSAVE, 0
 * without (the regset's n is set only when XSAVE is enabled).  dput() and
 * dget() are 64-bit system calls and deterministic processes cannot exec,
 * so caller and child share the x86_64 view.
 */
unsigned long det_xstate_size(void)
{
	const struct user_regset_view *view = task_user_regset_view(current);
	int setno = det_regset(view, NT_X86_XSTATE);

	if (setno < 0)
		return 0;
	return view->regsets[setno].n * view->regsets[setno].size;
}

unsigned long det_regs_size(unsigned long flags)
{
	unsigned long size = 0;

	BUILD_BUG_ON(sizeof(struct user_regs_struct) != DET_GENERAL_REGS_SIZE);
	BUILD_BUG_ON(sizeof(struct user_i387_struct) != DET_FP_REGS_SIZE);
	/* The XSAVE image starts with the FXSAVE image, then the header. */
	BUILD_BUG_ON(offsetof(struct xregs_state, header) !=
		     DET_XSTATE_HDR_OFFSET);
	BUILD_BUG_ON(XSAVE_HDR_OFFSET != DET_XSTATE_HDR_OFFSET);
	BUILD_BUG_ON(FXSAVE_SIZE != DET_FP_REGS_SIZE);
	/* Standard format: YMM_Hi128 (component 2) right after the header. */
	BUILD_BUG_ON(XSAVE_YMM_OFFSET != DET_XSTATE_YMM_OFFSET);

	if (flags & DET_GENERAL_REGS)
		size += DET_GENERAL_REGS_SIZE;
	if (flags & DET_FP_REGS)
		size += DET_FP_REGS_SIZE;
	if (flags & DET_XSTATE_REGS)
		size += det_xstate_size();
	return size;
}

static int det_regs_one(struct task_struct *t, bool put, unsigned int note,
			unsigned int size, void __user *buf)
{
	const struct user_regset_view *view = task_user_regset_view(t);
	int setno = det_regset(view, note);

	if (WARN_ON_ONCE(setno < 0 ||
			 view->regsets[setno].n * view->regsets[setno].size !=
			 size))
		return -EINVAL;
	if (put)
		return copy_regset_from_user(t, view, setno, 0, size, buf);
	return copy_regset_to_user(t, view, setno, 0, size, buf);
}

/*
 * Copy registers to (@put) or from stopped child @d.  The child must be
 * off its CPU so its FPU state is in memory, not in the registers of the
 * CPU it last ran on.
 */
int det_regs(struct det_proc *d, bool put, unsigned long flags,
	     void __user *buf, unsigned long size)
{
	struct task_struct *t = d->task;
	unsigned long xsize = det_xstate_size();
	int ret = 0;

	if (det_dead(d) || !t)
		return -ECHILD;
	if (size != det_regs_size(flags))
		return -EINVAL;
	while (!wait_task_inactive(t, TASK_KILLABLE)) {
		if (det_dead(d))
			return -ECHILD;
		if (fatal_signal_pending(current))
			return -EINTR;
		cond_resched();
	}

	if (flags & DET_GENERAL_REGS) {
		ret = det_regs_one(t, put, NT_PRSTATUS, DET_GENERAL_REGS_SIZE,
				   buf);
		buf += DET_GENERAL_REGS_SIZE;
	}
	if (!ret && (flags & DET_FP_REGS)) {
		ret = det_regs_one(t, put, NT_PRFPREG, DET_FP_REGS_SIZE, buf);
		buf += DET_FP_REGS_SIZE;
	}
	if (!ret && (flags & DET_XSTATE_REGS))
		ret = det_regs_one(t, put, NT_X86_XSTATE, xsize, buf);
	return ret;
}
