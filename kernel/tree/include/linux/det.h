/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Deterministic process groups: hooks called from the core kernel.
 *
 * Every hook is a no-op for legacy tasks (task->det == NULL) and compiles
 * away without CONFIG_DET.  The subsystem lives in kernel/det/.
 */
#ifndef _LINUX_DET_H
#define _LINUX_DET_H

#include <linux/sched.h>
#include <uapi/linux/det.h>

struct pt_regs;
struct kernel_siginfo;

#ifdef CONFIG_DET

int det_fork(struct task_struct *p);
void det_fork_done(struct task_struct *p);
void det_free_task(struct task_struct *t);
void __det_exit(struct task_struct *t);
void __det_exit_notify(struct task_struct *t);
bool __det_is_child(const struct task_struct *t);
long det_syscall_enter(struct pt_regs *regs, long nr);
void det_syscall_exit(struct pt_regs *regs);
bool __det_get_signal(int signr, struct kernel_siginfo *info);

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

#else /* !CONFIG_DET */

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

#endif /* CONFIG_DET */

#endif /* _LINUX_DET_H */
