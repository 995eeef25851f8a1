/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Deterministic process groups: hooks called from the core kernel.
 *
 * Every hook is a no-op for legacy tasks (task->det == NULL) and compiles
 * away without CONFIG_DET.  The subsystem lives in kernel/det/.
 */
#ifndef _LINUX_DET_H
#define _LINUX_DET_H

#include <linux/mm_types.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <uapi/linux/det.h>

struct pt_regs;
struct kernel_siginfo;

#ifdef CONFIG_DET

/*
 * Hooks from the memory manager for a deterministic child's write log
 * (kernel/det/wlog.c): every first write since its snapshot faults and is
 * logged.
 */
int det_wlog_note(struct mm_struct *mm, unsigned long addr, struct page *page,
		  gfp_t gfp);
vm_fault_t det_wlog_reserve(struct mm_struct *mm, unsigned long addr);
bool __det_wlog_pending(struct mm_struct *mm, unsigned long addr);
void det_mm_exit(struct mm_struct *mm);

static inline void det_mm_init(struct mm_struct *mm)
{
	mm->det_wlog = NULL;
}

/* Is @mm a snapshotted child's, whose writes are logged? */
static inline bool det_wlog_on(struct mm_struct *mm)
{
	return unlikely(READ_ONCE(mm->det_wlog) != NULL);
}

/* Is @mm logged, and @addr not yet written: must a write there fault? */
static inline bool det_wlog_pending(struct mm_struct *mm, unsigned long addr)
{
	return det_wlog_on(mm) && __det_wlog_pending(mm, addr);
}

int det_fork(struct task_struct *p);
void det_fork_done(struct task_struct *p);
void det_free_task(struct task_struct *t);
void __det_exit(struct task_struct *t);
void __det_exit_notify(struct task_struct *t);
bool __det_is_child(const struct task_struct *t);
long det_syscall_enter(struct pt_regs *regs, long nr);
void det_syscall_exit(struct pt_regs *regs);
bool __det_get_signal(int signr, struct kernel_siginfo *info);
bool __det_outsider(const struct task_struct *t);
bool __det_oom_instead(struct task_struct *victim);
void __det_exec(struct task_struct *t);
void __det_switch(struct task_struct *prev, struct task_struct *next);
bool det_emulate_cpuid(struct pt_regs *regs);

/* Is @t a deterministic process (not a master, not legacy)? */
static inline bool det_is_child(const struct task_struct *t)
{
	return unlikely(t->det) && __det_is_child(t);
}

static inline void det_exit(struct task_struct *t)
{
	if (unlikely(t->det))
		__det_exit(t);
}

static inline void det_exit_notify(struct task_struct *t)
{
	if (unlikely(t->det))
		__det_exit_notify(t);
}

static inline bool det_autoreap(const struct task_struct *t)
{
	return det_is_child(t);
}

static inline bool det_signal_refused(const struct task_struct *t)
{
	return det_is_child(t);
}

static inline bool det_ptrace_denied(const struct task_struct *t)
{
	return det_is_child(t);
}

static inline bool det_get_signal(int signr, struct kernel_siginfo *info)
{
	if (likely(!current->det))
		return false;
	return __det_get_signal(signr, info);
}

/*
 * Is current an outsider to deterministic process @t, i.e. not its parent?
 * Only its parent may change its priority, scheduling, limits or /proc
 * settings.  False for legacy processes and masters.
 */
static inline bool det_outsider(const struct task_struct *t)
{
	return det_is_child(t) && __det_outsider(t);
}

/*
 * Must signal @sig to @t be dropped at delivery?  A deterministic process
 * receives only signals it raises itself (faults) and SIGKILL from the
 * kernel (its parent, the OOM killer); whatever path a signal takes --
 * kill(), F_SETOWN/SIGIO, SIGURG, leases, dnotify -- this is where it is
 * queued.
 */
static inline bool det_signal_dropped(int sig, struct kernel_siginfo *info,
				      struct task_struct *t)
{
	if (likely(!det_is_child(t)) || t == current)
		return false;
	return !(sig == SIGKILL && info == SEND_SIG_PRIV);
}

/*
 * Hook from out_of_memory(): should the OOM killer take current rather
 * than @victim, its choice?  Yes when current is a deterministic process
 * whose allocation cannot be served and @victim belongs to the same tree
 * (its master or another of the master's descendants): the tree then
 * loses the process that could not be served, and no sibling's work or
 * master with it.  Pressure from outside the tree is handled as usual.
 */
static inline bool det_oom_instead(struct task_struct *victim)
{
	return det_is_child(current) && __det_oom_instead(victim);
}

/* Hook from begin_new_exec(): a master that execs is a legacy process. */
static inline void det_exec(struct task_struct *t)
{
	if (unlikely(t->det))
		__det_exec(t);
}

/*
 * Hook from __switch_to_xtra(): deterministic processes always have
 * TIF_NOTSC set, so every switch to or from one passes there.
 */
static inline void det_switch(struct task_struct *prev,
			      struct task_struct *next)
{
	if (unlikely(prev->det || next->det))
		__det_switch(prev, next);
}

#else /* !CONFIG_DET */

static inline int det_wlog_note(struct mm_struct *mm, unsigned long addr,
				struct page *page, gfp_t gfp)
{
	return 0;
}
static inline vm_fault_t det_wlog_reserve(struct mm_struct *mm,
					  unsigned long addr)
{
	return 0;
}
static inline void det_mm_exit(struct mm_struct *mm) { }
static inline void det_mm_init(struct mm_struct *mm) { }
static inline bool det_wlog_on(struct mm_struct *mm) { return false; }
static inline bool det_wlog_pending(struct mm_struct *mm, unsigned long addr)
{
	return false;
}

static inline int det_fork(struct task_struct *p) { return 0; }
static inline void det_fork_done(struct task_struct *p) { }
static inline void det_free_task(struct task_struct *t) { }
static inline void det_exit(struct task_struct *t) { }
static inline void det_exit_notify(struct task_struct *t) { }
static inline bool det_is_child(const struct task_struct *t) { return false; }
static inline bool det_autoreap(const struct task_struct *t) { return false; }
static inline bool det_signal_refused(const struct task_struct *t)
{
	return false;
}
static inline bool det_ptrace_denied(const struct task_struct *t)
{
	return false;
}
static inline long det_syscall_enter(struct pt_regs *regs, long nr)
{
	return 0;
}
static inline void det_syscall_exit(struct pt_regs *regs) { }
static inline bool det_get_signal(int signr, struct kernel_siginfo *info)
{
	return false;
}
static inline bool det_outsider(const struct task_struct *t) { return false; }
static inline bool det_oom_instead(struct task_struct *victim)
{
	return false;
}
static inline bool det_signal_dropped(int sig, struct kernel_siginfo *info,
				      struct task_struct *t)
{
	return false;
}
static inline void det_exec(struct task_struct *t) { }
static inline void det_switch(struct task_struct *prev,
			      struct task_struct *next) { }
static inline bool det_emulate_cpuid(struct pt_regs *regs) { return false; }

#endif /* CONFIG_DET */

#endif /* _LINUX_DET_H */
