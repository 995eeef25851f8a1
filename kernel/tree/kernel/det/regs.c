// SPDX-License-Identifier: GPL-2.0-only
/*
 * Deterministic process groups: DET_REGS.
 *
 * The user buffer holds, in this order, the general registers (struct
 * user_regs_struct, DET_GENERAL_REGS) and the x87/SSE state in FXSAVE
 * format (struct user_fpregs_struct, DET_FP_REGS), whichever are selected.
 * They go through the same regsets as ptrace(PTRACE_GETREGS/SETREGS) and
 * PTRACE_GETFPREGS/SETFPREGS, so a put is validated the same way (segment
 * selectors, reserved MXCSR bits).
 */

#include <linux/elf.h>
#include <linux/regset.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <asm/user.h>

#include "internal.h"

unsigned long det_regs_size(unsigned long flags)
{
	unsigned long size = 0;

	BUILD_BUG_ON(sizeof(struct user_regs_struct) != DET_GENERAL_REGS_SIZE);
	BUILD_BUG_ON(sizeof(struct user_i387_struct) != DET_FP_REGS_SIZE);

	if (flags & DET_GENERAL_REGS)
		size += DET_GENERAL_REGS_SIZE;
	if (flags & DET_FP_REGS)
		size += DET_FP_REGS_SIZE;
	return size;
}

static int det_regset(const struct user_regset_view *view,
		      unsigned int note, unsigned int size)
{
	unsigned int i;

	for (i = 0; i < view->n; i++)
		if (view->regsets[i].core_note_type == note &&
		    view->regsets[i].n * view->regsets[i].size == size)
			return i;
	return -1;
}

static int det_regs_one(struct task_struct *t, bool put, unsigned int note,
			unsigned int size, void __user *buf)
{
	const struct user_regset_view *view = task_user_regset_view(t);
	int setno = det_regset(view, note, size);

	if (WARN_ON_ONCE(setno < 0))
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
	if (!ret && (flags & DET_FP_REGS))
		ret = det_regs_one(t, put, NT_PRFPREG, DET_FP_REGS_SIZE, buf);
	return ret;
}
