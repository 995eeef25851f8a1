/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Deterministic process groups: internal interfaces.
 */
#ifndef _KERNEL_DET_INTERNAL_H
#define _KERNEL_DET_INTERNAL_H

#include <linux/det.h>
#include <linux/mm.h>
#include <linux/pgtable.h>
#include <linux/refcount.h>
#include <linux/signal.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/xarray.h>

/* Internal state of a child between kernel_clone() and its first stop. */
#define DET_S_CREATING	0

struct mm_struct;
struct page;

/**
 * struct det_req - work a parent hands to its stopped child, which runs it
 * in its own context (det_call()).
 * @fn:		what to run; its return value goes to @ret.
 * @start:	range start, for @fn.
 * @size:	range size, for @fn.
 * @prot:	PROT_* bits, for @fn.
 * @mm:		an address space, for @fn.
 * @ret:	@fn's result.
 */
struct det_req {
	int			(*fn)(struct det_req *req);
	unsigned long		start;
	unsigned long		size;
	unsigned long		prot;
	struct mm_struct	*mm;
	int			ret;
};

/**
 * struct det_proc - deterministic state of a master or of a deterministic
 * process.
 * @ref:	one reference held by the task (dropped in free_task(), or
 *		at exec for a master), one by the parent's @children table
 *		while listed there.
 * @rcu:	freed after a grace period: other tasks read a task's @det
 *		under RCU (det_is_child()) while a master may exec.
 * @master:	true for a master (a legacy process that called
 *		DET_BECOME_MASTER), false for a deterministic process.
 * @id:		the child ID its parent chose (deterministic processes).
 * @task:	the task, with a reference, while listed in its parent's
 *		table; NULL for a master's own state.
 * @children:	the caller's children by ID.  Only the owning task touches
 *		it (masters and deterministic processes are single-threaded).
 * @creating:	the child being created by the owner's dput(), so that
 *		det_fork() can tell a dput() creation from a legacy fork.
 * @allowed:	master only: signals that may interrupt its waits.
 * @lock:	protects @state, @st, and the @mm and @snap pointers.
 * @wq:		the parent waits here for the child to stop or die, the
 *		child waits here to be started.
 * @fresh:	a new child that has not yet run; it drops its clock pages
 *		and parks before it first reaches user space.  Child only.
 * @state:	DET_S_* (DET_S_CREATING until copy_process() can no longer
 *		fail, which sets DET_S_READY before the child can run).
 * @st:		what the parent reads with DET_GET_STATUS.
 * @req:	a request the parent posted for the stopped child to run.
 * @mm:		the child's address space, referenced by the parent's table
 *		(so DET_VM_COPY and DET_MERGE work after the child exits).
 * @snap:	the DET_SNAP reference copy, or NULL.  det_fork_done() and
 *		the parent set @mm and @snap (det_mm_set()); both are dropped
 *		when the child is forgotten or dies of a signal
 *		(det_mm_release()).
 * @nproc:	set when the child exits: its user's count of processes
 *		(RLIMIT_NPROC), which keeps counting it while its entry, task
 *		and memory stay pinned until DET_KILL.
 * @dying:	the caller's children killed with DET_KILL_NOWAIT that may
 *		not be dead yet, linked through their @next_dying; only the
 *		owning task touches it.
 * @next_dying:	the next on its parent's @dying list.
 */
/* What struct det_times accounts, in its order. */
enum det_time_kind { DET_T_SNAP, DET_T_MERGE, DET_T_COPY, DET_T_KILL,
		     DET_T_CALLS, DET_T_NR };

struct det_proc {
	refcount_t		ref;
	struct rcu_head		rcu;
	bool			master;
	unsigned long		id;
	struct task_struct	*task;
	struct xarray		children;
	struct det_proc		*creating;
	sigset_t		allowed;
	spinlock_t		lock;
	wait_queue_head_t	wq;
	bool			fresh;
	bool			want_log;	/* created with DET_SNAP */
	int			state;
	struct det_status	st;
	struct det_req		*req;
	struct mm_struct	*mm;
	struct mm_struct	*snap;
	struct ucounts		*nproc;
	struct det_proc		*dying;
	struct det_proc		*next_dying;
	/* Its TLB may hold entries its page table revoked (det_tlb_stale()). */
	atomic_t		tlb_stale;
	/* A master's: its group's time in memory operations (account.c). */
	atomic64_t		times[DET_T_NR];
};

/* process.c */
struct det_proc *det_alloc(bool master);
void det_put_proc(struct det_proc *d);
bool det_stopped(struct det_proc *d);
bool det_dead(struct det_proc *d);
int det_state(struct det_proc *d);
int det_become_master(void);
struct det_proc *det_create(struct det_proc *me, unsigned long id, bool snap);
int det_wait_stopped(struct det_proc *me, struct det_proc *d);
int det_start(struct det_proc *d);
int det_kill(struct det_proc *me, struct det_proc *d, bool nowait);
void det_sigkill(struct det_proc *d);
void det_reap_dying(struct det_proc *me, bool wait);
void det_get_status(struct det_proc *d, struct det_status *st);
void det_stop(struct det_proc *me, int state, int reason, int signo,
	      int code, unsigned long addr, long nr);
void det_park(struct det_proc *me);
void det_tlb_stale(struct det_proc *d);
int det_call(struct det_proc *d, struct det_req *req);

/* memory.c */

void det_mm_set(struct det_proc *d, struct mm_struct *mm,
		struct mm_struct *snap);
void det_mm_release(struct det_proc *d);
void det_mm_release_async(struct det_proc *d);
int det_mm_get(struct det_proc *d, struct mm_struct **mm,
	       struct mm_struct **snap);
pmd_t *det_find_pmd(struct mm_struct *mm, unsigned long addr,
		    unsigned long *empty);
bool det_unpopulated(struct mm_struct *mm, unsigned long addr);
long det_gup(struct mm_struct *mm, unsigned long addr, unsigned long nr,
	     unsigned int gup, struct page **pages);
int det_vm_map(struct det_proc *d, bool zero, unsigned long start,
	       unsigned long size, unsigned long prot);
int det_snap_except_ok(const struct det_range *except);
int det_snap(struct det_proc *d, bool created,
	     const struct det_range *ranges);
int det_vm_copy(struct det_proc *d, bool put, unsigned long start,
		unsigned long size, unsigned long dst);

/* wlog.c */
bool det_wlog_usable(struct mm_struct *parent, struct mm_struct *child);
int det_wlog_start(struct mm_struct *mm);
bool det_wlog_has(struct mm_struct *mm, unsigned long addr);
bool det_wlog_next(struct mm_struct *mm, unsigned long *addr,
		   unsigned long end);
unsigned int det_wlog_block(struct mm_struct *mm, unsigned long base,
			    unsigned long addr, unsigned long end, u16 *idx,
			    unsigned long *pfn);
int det_wlog_prepare(struct mm_struct *mm, unsigned long addr);
int det_wlog_zap(struct mm_struct *mm, unsigned long start, unsigned long end);
int det_wlog_give(struct mm_struct *mm, unsigned long start,
		  unsigned long end);
void det_wlog_restart(struct mm_struct *mm);

/* resnap.c */
extern atomic_t det_resnaps;
int det_resnap(struct det_proc *d, bool *touched);

/* merge.c */
int det_merge(struct det_proc *d, const struct det_range *ranges,
	      unsigned long nr, unsigned long report, unsigned long report_size);
bool det_vma_linked(struct vm_area_struct *cvma, struct anon_vma *av);

/*
 * A small anonymous page, neither KSM's nor in the swap cache: one whose
 * mapping a merge can hand to the caller, or a snapshot made in place can
 * overwrite, when nothing else maps or holds it.
 */
static inline bool det_folio_plain_anon(struct folio *folio)
{
	return folio_test_anon(folio) && !folio_test_large(folio) &&
	       !folio_test_ksm(folio) && !folio_test_swapcache(folio);
}
int det_merge_call(struct det_proc *d, unsigned long flags,
		   unsigned long start, unsigned long size,
		   unsigned long report);

/* Has child @d died of a signal since the operation began? */
static inline bool det_killed(struct det_proc *d)
{
	return READ_ONCE(d->state) == DET_S_EXCEPT_DEAD;
}

/* enforce.c */
void det_drop_outside(void);
int det_check_outside(struct mm_struct *mm);
int det_privatize_files(struct mm_struct *mm);

/* cpu.c */
void det_cpu_fork(struct task_struct *p);

void det_account(enum det_time_kind kind, u64 start_ns);
int det_get_times(struct det_proc *me, unsigned long buf);

/* regs.c */
int det_regs(struct det_proc *d, bool put, unsigned long flags,
	     void __user *buf, unsigned long size);
unsigned long det_regs_size(unsigned long flags);
unsigned long det_xstate_size(void);

#endif /* _KERNEL_DET_INTERNAL_H */
