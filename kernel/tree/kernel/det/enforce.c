// SPDX-License-Identifier: GPL-2.0-only
/*
 * Deterministic process groups: enforcement.
 *
 * A deterministic process may make exactly five system calls: dput, dget,
 * dret, exit and exit_group.  Any other number -- in or past the table,
 * with the x32 bit, or from a 32-bit entry -- stops it before the call is
 * dispatched, as an implicit dret() with status DET_S_EXCEPT; the parent
 * reads the number from struct det_status and may emulate the call by
 * setting rax with DET_REGS before starting the child again.  Left alone,
 * the call returns -ENOSYS.
 *
 * The time stamp counter is disabled for it (TIF_NOTSC, CR4.TSD), so
 * rdtsc/rdtscp fault, and the vDSO and vvar pages, which expose the
 * kernel's clock, are unmapped before it first runs: touching them faults.
 */

#include <linux/compat.h>
#include <linux/mm.h>
#include <linux/sched/signal.h>
#include <linux/syscalls.h>
#include <asm/syscall.h>
#include <asm/vdso.h>

#include "internal.h"

static bool det_syscall_allowed(long nr)
{
	if (in_compat_syscall())
		return false;
	switch (nr) {
	case __NR_dput:
	case __NR_dget:
	case __NR_dret:
	case __NR_exit:
	case __NR_exit_group:
		return true;
	}
	return false;
}

/*
 * Hook from syscall_trace_enter() for tasks with SYSCALL_WORK_DET.  Returns
 * nonzero if the system call must be skipped.
 */
long det_syscall_enter(struct pt_regs *regs, long nr)
{
	struct det_proc *me = current->det;

	if (WARN_ON_ONCE(!me) || det_syscall_allowed(nr))
		return 0;

	syscall_set_return_value(current, regs, -ENOSYS, 0);
	det_stop(me, DET_S_EXCEPT, DET_R_SYSCALL, 0, 0, 0, regs->orig_ax);
	return 1;
}

/*
 * Unmap the vDSO and vvar pages of the current (new, not yet started)
 * deterministic process: they let user space read the kernel's clock
 * without a system call.  x86_64 maps them as one range, vvar just below
 * the vDSO text.
 */
void det_drop_vdso(void)
{
	struct mm_struct *mm = current->mm;
	const struct vdso_image *image = mm->context.vdso_image;
	unsigned long text = (unsigned long)mm->context.vdso;

	if (!image || !text)
		return;
	if (vm_munmap(text + image->sym_vvar_start,
		      image->size - image->sym_vvar_start))
		return;
	mm->context.vdso = NULL;
	mm->context.vdso_image = NULL;
}

/*
 * Hook from syscall_exit_work() for tasks with SYSCALL_WORK_DET: a process
 * just created by dput() drops its clock pages and parks, stopped, before
 * it ever runs in user space.
 */
void det_syscall_exit(struct pt_regs *regs)
{
	struct det_proc *me = current->det;

	if (WARN_ON_ONCE(!me) || likely(!me->fresh))
		return;
	me->fresh = false;
	det_drop_vdso();
	det_park(me);
}
