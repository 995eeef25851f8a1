// SPDX-License-Identifier: GPL-2.0-only
/*
 * Deterministic process groups: process lifecycle.
 *
 * Masters and deterministic processes are single-threaded (a master may
 * not create threads, a deterministic process may not make the system
 * call), so a task's table of children is only ever touched by the task
 * itself.  The stop/start handshake between a parent and a child goes
 * through the child's @state under its @lock, with both sides sleeping on
 * the child's @wq.
 *
 * Lifetime: a child's struct det_proc has one reference from its task
 * (dropped in free_task()) and one from its parent's table; the parent also
 * holds a reference on the child's task_struct while the child is listed.
 * A child is autoreaped at exit (it never becomes a zombie and is never
 * reparented); its parent drops it with DET_KILL or when it exits itself.
 */

#include <linux/debugfs.h>
#include <linux/hugetlb.h>
#include <linux/mm.h>
#include <linux/oom.h>
#include <linux/ptrace.h>
#include <linux/rseq.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/sched/task_stack.h>
#include <linux/slab.h>
#include <linux/user_namespace.h>
#include <asm/ia32.h>
#include <asm/tlbflush.h>

#include "internal.h"

/* Live struct det_proc objects, for leak tests (debugfs det/objects). */
static atomic_t det_objects = ATOMIC_INIT(0);

struct det_proc *det_alloc(bool master)
{
	struct det_proc *d = kzalloc(sizeof(*d), GFP_KERNEL_ACCOUNT);

	if (!d)
		return NULL;
	atomic_inc(&det_objects);
	refcount_set(&d->ref, 1);
	d->master = master;
	xa_init(&d->children);
	spin_lock_init(&d->lock);
	init_waitqueue_head(&d->wq);
	d->state = DET_S_CREATING;
	d->fresh = !master;
	d->st.syscall_nr = -1;
	return d;
}

void det_put_proc(struct det_proc *d)
{
	if (!refcount_dec_and_test(&d->ref))
		return;
	/*
	 * The owner emptied its table in __det_exit(), which leaves the
	 * xarray with no nodes: nothing to destroy.  (This may run from an
	 * RCU callback via free_task(), where taking the xarray lock would
	 * be wrong.)
	 */
	WARN_ON_ONCE(!xa_empty(&d->children));
	WARN_ON_ONCE(d->task);
	kfree_rcu(d, rcu);
	atomic_dec(&det_objects);
}

int det_state(struct det_proc *d)
{
	int s = READ_ONCE(d->state);

	return s == DET_S_CREATING ? DET_S_RUNNING : s;
}

bool det_stopped(struct det_proc *d)
{
	int s = READ_ONCE(d->state);

	return s != DET_S_RUNNING && s != DET_S_CREATING;
}

bool det_dead(struct det_proc *d)
{
	int s = READ_ONCE(d->state);

	return s == DET_S_EXIT_NORMAL || s == DET_S_EXCEPT_DEAD;
}

bool __det_is_child(const struct task_struct *t)
{
	struct det_proc *d;
	bool ret;

	rcu_read_lock();
	d = READ_ONCE(t->det);
	ret = d && !d->master;
	rcu_read_unlock();
	return ret;
}

/*
 * Is current anyone but deterministic process @t's parent?  Children are
 * never reparented, so their real_parent is the process that created
 * them with dput().
 */
bool __det_outsider(const struct task_struct *t)
{
	bool ret;

	rcu_read_lock();
	ret = rcu_dereference(t->real_parent) != current;
	rcu_read_unlock();
	return ret;
}

/*
 * The root of @t's tree: the first of @t and its ancestors that is not a
 * deterministic process (a master's thread, or @t itself when it is none).
 * Children are never reparented, so the chain is the creation chain.
 */
static struct task_struct *det_root(struct task_struct *t)
{
	RCU_LOCKDEP_WARN(!rcu_read_lock_held(), "walking a tree needs RCU");
	while (det_is_child(t))
		t = rcu_dereference(t->real_parent);
	return t;
}

/*
 * Called for current, a deterministic process the OOM killer runs for:
 * is @victim of current's own tree, so that current should die instead?
 * Not when current may not be killed for memory at all.
 */
bool __det_oom_instead(struct task_struct *victim)
{
	bool ret;

	if (!current->mm ||
	    current->signal->oom_score_adj == OOM_SCORE_ADJ_MIN)
		return false;
	rcu_read_lock();
	ret = same_thread_group(det_root(victim), det_root(current));
	rcu_read_unlock();
	return ret;
}

static bool det_mm_unsupported(struct mm_struct *mm)
{
	VMA_ITERATOR(vmi, mm, 0);
	struct vm_area_struct *vma;
	bool bad = false;

	if (!mm)
		return false;
	if (IS_ENABLED(CONFIG_KSM) && test_bit(MMF_VM_MERGEABLE, &mm->flags))
		return true;
	mmap_read_lock(mm);
	for_each_vma(vmi, vma) {
		if (is_vm_hugetlb_page(vma) || (vma->vm_flags & VM_MERGEABLE)) {
			bad = true;
			break;
		}
	}
	mmap_read_unlock(mm);
	return bad;
}

/*
 * Has another process ever shared @mm (clone(CLONE_VM) without
 * CLONE_THREAD), or is current a vfork() child borrowing its parent's?
 * The memory operations assume one task per address space.
 * MMF_MULTIPROCESS is never cleared, so this errs on the side of refusing.
 */
static bool det_mm_shared(struct mm_struct *mm)
{
	return current->vfork_done ||
	       (mm && test_bit(MMF_MULTIPROCESS, &mm->flags));
}

/*
 * DET_BECOME_MASTER; 0 for a master already.  Refused for a process with
 * other threads or with children of its own (they would be legacy
 * processes of a master), for one sharing its address space with another
 * process, and for one with hugetlb or KSM mappings, which the memory
 * operations do not support.
 */
int det_become_master(void)
{
	struct task_struct *me = current;
	struct det_proc *d;
	bool children;

	if (me->det)
		return me->det->master ? 0 : -EACCES;	/* as v3.0-det */
	/*
	 * Count live threads, not thread_group_empty(): a joined thread is
	 * reported gone (CLONE_CHILD_CLEARTID) shortly before it leaves the
	 * thread group, but it has already given up its place in ->live.
	 */
	if (atomic_read(&me->signal->live) != 1)
		return -EBUSY;
	read_lock(&tasklist_lock);
	children = !list_empty(&me->children);
	read_unlock(&tasklist_lock);
	if (children || det_mm_shared(me->mm))
		return -EBUSY;
	if (det_mm_unsupported(me->mm))
		return -EOPNOTSUPP;
	/*
	 * With IA32 emulation off at boot, a compat-mode syscall returns
	 * -ENOSYS straight from the entry code, without the syscall work
	 * that stops a deterministic process: no such process may exist.
	 */
	if (!ia32_enabled())
		return -EOPNOTSUPP;

	d = det_alloc(true);
	if (!d)
		return -ENOMEM;
	d->state = DET_S_RUNNING;
	/*
	 * Published last: det_fork() now refuses legacy forks.  Pairs with
	 * the READ_ONCE() (an address dependency) of readers of ->det, who
	 * then see the initialised state.
	 */
	smp_store_release(&me->det, d);
	return 0;
}

/* Hook from copy_process(), right after dup_task_struct(). */
int det_fork(struct task_struct *p)
{
	struct det_proc *me = current->det;
	struct det_proc *d;

	/* dup_task_struct() copied the parent's pointer. */
	p->det = NULL;
	if (likely(!me))
		return 0;
	d = me->creating;
	if (!d)
		return -EPERM;	/* legacy fork/vfork/clone from a master */

	refcount_inc(&d->ref);
	p->det = d;
	set_task_syscall_work(p, DET);
	set_tsk_thread_flag(p, TIF_NOTSC);
	det_cpu_fork(p);
	return 0;
}

/* Hook from copy_process(), once creation can no longer fail. */
void det_fork_done(struct task_struct *p)
{
	struct det_proc *d = p->det;

	if (likely(!d))
		return;
	/*
	 * rseq_fork() copied the parent's rseq registration: the kernel
	 * would write the CPU number into the child's memory whenever it is
	 * preempted or migrates, which is both nondeterministic and, once
	 * the child's memory is replaced, a fault.  Drop it.
	 */
	rseq_execve(p);
	get_task_struct(p);
	d->task = p;
	/*
	 * The child is stopped from the start: it cannot reach user space
	 * before its state says DET_S_RUNNING.  It becomes READY here,
	 * before wake_up_new_task(), so nothing the parent records can
	 * overwrite what the child reports if it dies at once (SIGKILL, OOM).
	 */
	d->mm = get_task_mm(p);
	/*
	 * A snapshot's write log starts before the child can run: its own
	 * first steps (det_drop_outside()) may already write.  Without one
	 * (no memory, or a caller it cannot serve) det_snap() makes a
	 * reference copy instead.
	 */
	if (d->want_log && d->mm && det_wlog_usable(current->mm, d->mm))
		det_wlog_start(d->mm);
	d->st.ip = instruction_pointer(task_pt_regs(p));
	WRITE_ONCE(d->state, DET_S_READY);
}

/* Hook from free_task(): the task's own reference. */
void det_free_task(struct task_struct *t)
{
	if (unlikely(t->det)) {
		det_put_proc(t->det);
		t->det = NULL;
	}
}

/* Drop a child from its parent's table; it must be dead or never born. */
/* Drop the caller's entry for child @d, out of its table already. */
static void det_release(struct det_proc *d, bool async)
{
	struct task_struct *t = d->task;

	if (async)
		det_mm_release_async(d);
	else
		det_mm_release(d);
	if (d->nproc) {
		dec_rlimit_ucounts(d->nproc, UCOUNT_RLIMIT_NPROC, 1);
		put_ucounts(d->nproc);
	}
	d->nproc = NULL;
	d->task = NULL;
	det_put_proc(d);
	if (t)
		put_task_struct(t);
}

static void det_forget(struct det_proc *me, struct det_proc *d)
{
	xa_erase(&me->children, d->id);
	det_release(d, false);
}

/*
 * Release the caller's children killed without waiting that are dead by
 * now; with @wait, wait for each first.
 */
void det_reap_dying(struct det_proc *me, bool wait)
{
	struct det_proc **p = &me->dying, *d;

	while ((d = *p)) {
		if (wait)
			wait_event(d->wq, det_dead(d));
		if (!det_dead(d)) {
			p = &d->next_dying;
			continue;
		}
		*p = d->next_dying;
		det_release(d, true);
	}
}

/*
 * Create child @id of the caller, fork-like: a copy-on-write image of the
 * caller's memory and its registers at this dput(), returning 0 from dput()
 * when first started; with @snap, that image is a snapshot to merge from
 * (its writes are logged, where a log can stand for a reference: wlog.c).
 * Returns once the child has parked, stopped.
 */
struct det_proc *det_create(struct det_proc *me, unsigned long id, bool snap)
{
	struct kernel_clone_args args = {
		.flags		= CLONE_UNTRACED,
		.exit_signal	= 0,
	};
	struct mm_struct *mm;
	struct det_proc *d;
	pid_t pid;
	int err;

	err = det_check_outside(current->mm);
	if (err)
		return ERR_PTR(err);
	d = det_alloc(false);
	if (!d)
		return ERR_PTR(-ENOMEM);
	d->id = id;
	d->want_log = snap;
	err = xa_insert(&me->children, id, d, GFP_KERNEL_ACCOUNT);
	if (err) {
		det_put_proc(d);
		return ERR_PTR(err == -EBUSY ? -EEXIST : err);
	}

	me->creating = d;
	pid = kernel_clone(&args);
	me->creating = NULL;
	if (pid < 0) {
		det_forget(me, d);
		return ERR_PTR(pid);
	}

	/*
	 * det_fork_done() made it READY; it may already have died.  Its
	 * private file mappings become its own now, before this dput()
	 * returns: whatever the caller (or anyone) writes to those files
	 * afterwards does not reach it.  A snapshot's log started already
	 * (det_fork_done()): those copies are writes it logs.
	 */
	spin_lock(&d->lock);
	mm = d->mm;
	if (mm)
		mmget(mm);
	spin_unlock(&d->lock);
	if (mm) {
		err = det_privatize_files(mm);
		mmput(mm);
		if (err) {
			det_kill(me, d, false);
			return ERR_PTR(err);
		}
	}
	return d;
}

/*
 * Called by the child itself: stop with @state, wake the parent, and wait
 * until the parent starts it again or it is killed.
 */
void det_stop(struct det_proc *me, int state, int reason, int signo,
	      int code, unsigned long addr, long nr)
{
	spin_lock(&me->lock);
	me->st.reason = reason;
	me->st.signo = signo;
	me->st.code = code;
	me->st.addr = addr;
	me->st.syscall_nr = nr;
	me->st.ip = instruction_pointer(current_pt_regs());
	WRITE_ONCE(me->state, state);
	spin_unlock(&me->lock);
	/* We are about to sleep: let the parent run on this CPU. */
	wake_up_sync(&me->wq);
	det_park(me);
}

/*
 * Called by a stopped child: wait until the parent starts it again (or it
 * is killed), meanwhile running the requests the parent posts.
 */
void det_park(struct det_proc *me)
{
	struct det_req *req;

	for (;;) {
		if (wait_event_killable(me->wq,
				READ_ONCE(me->state) == DET_S_RUNNING ||
				/* pairs with det_call()'s release */
				smp_load_acquire(&me->req)))
			return;
		/* Pairs with det_tlb_stale()'s barrier. */
		smp_rmb();
		if (atomic_xchg(&me->tlb_stale, 0))
			flush_tlb_mm(current->mm);
		/* Pairs with det_call()'s release: the request is complete. */
		req = smp_load_acquire(&me->req);
		if (!req)
			return;
		req->ret = req->fn(req);
		/* Pairs with det_call()'s acquire: ->ret is written first. */
		smp_store_release(&me->req, NULL);
		wake_up_all(&me->wq);
	}
}

/*
 * Parent side: stopped child @d's page table no longer lets it write some
 * page its TLB may still map writable (a merge shared the page with the
 * parent, det_share_page()).  Flushing every CPU that ran it now would
 * cost an interrupt per merge, and most children never run again: the
 * child flushes its own TLB when it wakes (det_park()), before it runs
 * anything, in user space or in the kernel, that could write through it.
 */
void det_tlb_stale(struct det_proc *d)
{
	atomic_set(&d->tlb_stale, 1);
	/* Ordered before the wake-up's store of its state or request. */
	smp_wmb();
}

/*
 * Parent side: have stopped child @d run @req in its own context and wait
 * for the result.  The wait cannot be interrupted, since @req lives on the
 * caller's stack; the child either runs it promptly or dies first.
 */
int det_call(struct det_proc *d, struct det_req *req)
{
	spin_lock(&d->lock);
	if (det_dead(d) || !d->task) {
		spin_unlock(&d->lock);
		return -ECHILD;
	}
	/* Pairs with det_park()'s acquire: it sees all of @req. */
	smp_store_release(&d->req, req);
	spin_unlock(&d->lock);
	wake_up_all(&d->wq);
	/* Pairs with det_park()'s release: ->ret is then the result. */
	wait_event(d->wq, !smp_load_acquire(&d->req) || det_dead(d));
	/* Still there (acquire, as above): nobody took it. */
	if (smp_load_acquire(&d->req)) {
		/* It died before taking the request. */
		WRITE_ONCE(d->req, NULL);
		return -ECHILD;
	}
	return req->ret;
}

/* Any signal in @set pending for current? */
static bool det_signal_in(const sigset_t *set)
{
	sigset_t pend;

	spin_lock_irq(&current->sighand->siglock);
	sigorsets(&pend, &current->pending.signal,
		  &current->signal->shared_pending.signal);
	spin_unlock_irq(&current->sighand->siglock);
	sigandsets(&pend, &pend, set);
	return !sigisemptyset(&pend);
}

/*
 * Parent side: wait until child @d is stopped (or dead).  A deterministic
 * parent's wait ends only by SIGKILL.  A master's wait may also be ended by
 * the signals it allowed with DET_ALLOW_SIGNALS (-EINTR); every other signal
 * stays blocked while it waits and is delivered afterwards.  If the wait is
 * broken by a stop signal, the call restarts transparently.
 */
int det_wait_stopped(struct det_proc *me, struct det_proc *d)
{
	sigset_t saved, mask;
	int ret;

	if (det_stopped(d))
		return 0;
	if (!me->master)
		return wait_event_killable(d->wq, det_stopped(d)) ? -EINTR : 0;

	saved = current->blocked;
	siginitsetinv(&mask, 0);
	sigandnsets(&mask, &mask, &me->allowed);
	sigorsets(&mask, &mask, &saved);
	set_current_blocked(&mask);
	ret = wait_event_interruptible(d->wq, det_stopped(d));
	if (ret)
		ret = fatal_signal_pending(current) ||
		      det_signal_in(&me->allowed) ? -EINTR : -ERESTARTNOINTR;
	set_current_blocked(&saved);
	return ret;
}

/* Set a stopped child running.  Caller has waited for it to stop. */
int det_start(struct det_proc *d)
{
	spin_lock(&d->lock);
	if (d->state == DET_S_EXIT_NORMAL || d->state == DET_S_EXCEPT_DEAD) {
		spin_unlock(&d->lock);
		return -ECHILD;
	}
	d->st.reason = DET_R_NONE;
	d->st.signo = 0;
	d->st.code = 0;
	d->st.addr = 0;
	d->st.syscall_nr = -1;
	WRITE_ONCE(d->state, DET_S_RUNNING);
	spin_unlock(&d->lock);
	wake_up_all(&d->wq);
	return 0;
}

void det_get_status(struct det_proc *d, struct det_status *st)
{
	spin_lock(&d->lock);
	*st = d->st;
	st->status = det_state(d);
	spin_unlock(&d->lock);
}

void det_sigkill(struct det_proc *d)
{
	if (d->task && !det_dead(d))
		send_sig_info(SIGKILL, SEND_SIG_PRIV, d->task);
}

/*
 * DET_KILL: destroy child @d and its whole subtree, and drop it from the
 * caller's table.  Without DET_KILL_POISON the caller has already waited for
 * it to stop; with it, a running child is killed where it is.  Returns once
 * nothing of the subtree is left (no task, no /proc entry); with @nowait at
 * once, the ID free, while the subtree dies on other CPUs (a killed child
 * frees its memory in its own exit, __det_exit(); an exited one's is freed
 * by a worker, mmput_async()).  Children still dying are released by later
 * calls, and waited for at the caller's exit.
 */
int det_kill(struct det_proc *me, struct det_proc *d, bool nowait)
{
	det_reap_dying(me, false);
	det_sigkill(d);
	if (nowait) {
		xa_erase(&me->children, d->id);
		if (det_dead(d)) {
			det_release(d, true);
			return 0;
		}
		d->next_dying = me->dying;
		me->dying = d;
		return 0;
	}
	if (wait_event_killable(d->wq, det_dead(d)))
		return -EINTR;
	det_forget(me, d);
	return 0;
}

/*
 * Hook from do_exit(), once PF_EXITING is set: a deterministic process
 * never outlives its parent, so kill every child first, then wait until
 * each one is released.  Kill them all before waiting for any, so a wide
 * tree dies in parallel.
 */
void __det_exit(struct task_struct *t)
{
	struct det_proc *me = t->det;
	struct det_proc *d;
	unsigned long id;

	if (WARN_ON_ONCE(t != current))
		return;
	xa_for_each(&me->children, id, d)
		det_sigkill(d);
	xa_for_each(&me->children, id, d) {
		if (d->task)
			wait_event(d->wq, det_dead(d));
		det_forget(me, d);
	}
	det_reap_dying(me, true);
	/*
	 * Dying of a signal (its parent's DET_KILL, or the OOM killer): drop
	 * the parent's references on its memory now, so that exit_mm() frees
	 * it while the task still exists.  Freed only once the task is
	 * released (__det_exit_notify()), the OOM killer could find no
	 * victim left in between and kill the next process too.
	 */
	if (!me->master && (t->signal->group_exit_code & 0x7f))
		det_mm_release(me);
}

/*
 * Hook from begin_new_exec(), past the point of no return, single
 * threaded: a master's children die as at its exit, and the new program
 * starts as a legacy process.  (A deterministic process cannot exec.)
 */
void __det_exec(struct task_struct *t)
{
	struct det_proc *me = t->det;

	if (WARN_ON_ONCE(!me->master))
		return;
	__det_exit(t);
	WRITE_ONCE(t->det, NULL);
	det_put_proc(me);
}

/*
 * Hook from do_exit(), after exit_notify() released the task: record how
 * the child ended and wake its parent.
 */
void __det_exit_notify(struct task_struct *t)
{
	struct det_proc *me = t->det;
	int code = t->exit_code;

	if (me->master)
		return;
	/*
	 * release_task() stopped counting it as a process of its user; its
	 * entry still pins its task and memory, so count it again until
	 * its parent forgets it: a master cannot pile up exited children
	 * past RLIMIT_NPROC.
	 */
	rcu_read_lock();
	me->nproc = get_ucounts(task_ucounts(t));
	rcu_read_unlock();
	if (me->nproc)
		inc_rlimit_ucounts(me->nproc, UCOUNT_RLIMIT_NPROC, 1);
	spin_lock(&me->lock);
	if (!(code & 0x7f)) {
		me->st.reason = DET_R_EXIT;
		me->st.exit_code = (code >> 8) & 0xff;
		me->st.signo = 0;
		WRITE_ONCE(me->state, DET_S_EXIT_NORMAL);
	} else {
		me->st.reason = DET_R_KILLED;
		me->st.signo = code & 0x7f;
		WRITE_ONCE(me->state, DET_S_EXCEPT_DEAD);
	}
	me->st.code = 0;
	me->st.addr = 0;
	me->st.syscall_nr = -1;
	me->st.ip = 0;
	spin_unlock(&me->lock);
	/*
	 * Killed (by its parent, or for memory): nothing may keep its
	 * memory, or the OOM killer would go on to kill the next process.
	 * __det_exit() released it already; this catches a snapshot the
	 * parent installed in between (det_mm_set() refuses new ones only
	 * from the state just set).  The parent's memory operations on it
	 * fail with -ECHILD from now.
	 */
	if (code & 0x7f)
		det_mm_release(me);
	wake_up_sync(&me->wq);
}

#ifdef CONFIG_DEBUG_FS
static int __init det_debugfs_init(void)
{
	struct dentry *dir = debugfs_create_dir("det", NULL);

	debugfs_create_atomic_t("objects", 0444, dir, &det_objects);
	debugfs_create_atomic_t("resnaps", 0444, dir, &det_resnaps);
	return 0;
}
late_initcall(det_debugfs_init);
#endif
