// SPDX-License-Identifier: GPL-2.0-only
/*
 * Deterministic process groups: signals.
 *
 * No signal from user space reaches a deterministic process:
 * check_kill_permission() refuses them (det_signal_refused()).  What
 * remains are signals the kernel generates itself.  A fault signal
 * (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS raised by the CPU or the
 * kernel on behalf of the faulting instruction) becomes an implicit dret():
 * the process stops with DET_S_EXCEPT, the parent reads the signal number,
 * si_code and fault address, and the signal is consumed -- no handler runs,
 * no core is dumped.  SIGKILL (DET_KILL, a dying parent, the OOM killer)
 * keeps its meaning.  Any other kernel-generated signal is discarded.
 */

#include <linux/sched/signal.h>
#include <linux/signal.h>

#include "internal.h"

#define DET_FAULT_SIGNALS (sigmask(SIGSEGV) | sigmask(SIGBUS) | \
			   sigmask(SIGILL) | sigmask(SIGTRAP) | \
			   sigmask(SIGFPE) | sigmask(SIGSYS))

/*
 * Hook from get_signal(), called with siglock held for a dequeued signal.
 * Returns true if the signal was consumed.  Drops and retakes siglock to
 * stop.
 */
bool __det_get_signal(int signr, struct kernel_siginfo *info)
{
	struct det_proc *me = current->det;

	if (me->master || signr == SIGKILL)
		return false;
	if (!(sigmask(signr) & DET_FAULT_SIGNALS) || !SI_FROMKERNEL(info))
		return true;

	spin_unlock_irq(&current->sighand->siglock);
	det_stop(me, DET_S_EXCEPT, DET_R_SIGNAL, signr, info->si_code,
		 (unsigned long)info->si_addr, -1);
	spin_lock_irq(&current->sighand->siglock);
	return true;
}
