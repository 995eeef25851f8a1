// SPDX-License-Identifier: GPL-2.0-only
/*
 * Deterministic process groups: memory operations on a child's mappings
 * (DET_VM_ZERO, DET_PERM, DET_SNAP, DET_VM_COPY) and the parent's references
 * on a child's address spaces.
 *
 * DET_VM_ZERO and DET_PERM change the child's mappings, so the child runs
 * them itself, in its own context, as the mmap()/mprotect() it may not
 * call (det_call(): the parent hands the request over and waits).
 * DET_VM_COPY and DET_MERGE run in the caller's context: the caller's side
 * is plain user memory, the child's side (and the snapshot reference) are
 * reached through get_user_pages_remote() on the child's mm (a merge takes
 * the pages it merges in one walk of the child's page table instead,
 * merge.c), which the parent keeps referenced (det_proc.mm) so that it
 * outlives the child's exit.
 *
 * DET_SNAP copies the caller's address space with dup_mm(), exactly as
 * fork() does, for the child (or, for a new child, the fork that creates
 * it), and starts the copy's write log (wlog.c): the merge's record of
 * what the snapshot held wherever the child writes.  Where a log cannot
 * stand for it (det_wlog_usable()), a second copy-on-write image no task
 * runs in is the reference instead (det_proc.snap).
 *
 * The merge engine is merge.c.
 */

#include <linux/highmem.h>
#include <linux/huge_mm.h>
#include <linux/memcontrol.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/mmu_notifier.h>
#include <linux/pgtable.h>
#include <linux/rmap.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/swap.h>
#include <linux/swapops.h>
#include <linux/uaccess.h>
#include <linux/userfaultfd_k.h>
#include <asm/mmu_context.h>

#include "internal.h"
/* ---- the parent's references on a child's address spaces ---- */

/*
 * Replace child @d's address space (if @mm) and reference with these (a
 * NULL @snap: none, the address space's write log stands for it), taking
 * over the caller's references.  A child that died of a signal has
 * released its memory for good (det_mm_release()): then the new ones are
 * dropped instead.
 */
void det_mm_set(struct det_proc *d, struct mm_struct *mm,
		struct mm_struct *snap)
{
	struct mm_struct *old_mm = mm, *old_snap = snap;

	spin_lock(&d->lock);
	if (d->state != DET_S_EXCEPT_DEAD) {
		if (mm) {
			old_mm = d->mm;
			d->mm = mm;
		}
		old_snap = d->snap;
		d->snap = snap;
	}
	spin_unlock(&d->lock);
	if (old_mm)
		mmput(old_mm);
	if (old_snap)
		mmput(old_snap);
}

/*
 * Drop the parent's references on child @d's address space and reference:
 * when the child is forgotten, and as soon as it dies of a signal, so that
 * an out-of-memory kill frees the child's memory at once.
 */
static void det_mm_drop(struct det_proc *d, void (*put)(struct mm_struct *))
{
	struct mm_struct *mm, *snap;

	spin_lock(&d->lock);
	mm = d->mm;
	snap = d->snap;
	d->mm = NULL;
	d->snap = NULL;
	spin_unlock(&d->lock);
	if (mm)
		put(mm);
	if (snap)
		put(snap);
}

void det_mm_release(struct det_proc *d)
{
	det_mm_drop(d, mmput);
}

/*
 * The same for a child killed without waiting (DET_KILL_NOWAIT): the
 * address spaces are torn down by a worker, on another CPU, not by the
 * caller, which the kill is not to hold up.
 */
void det_mm_release_async(struct det_proc *d)
{
	det_mm_drop(d, mmput_async);
}

/*
 * References of the caller's own on child @d's address space and (if
 * @snap) its reference, NULL where its write log stands for one, for an
 * operation: -ECHILD once the child died of a signal (its memory is gone),
 * -ENODATA if it has no snapshot.
 */
int det_mm_get(struct det_proc *d, struct mm_struct **mm,
	       struct mm_struct **snap)
{
	int ret = 0;

	spin_lock(&d->lock);
	*mm = d->mm;
	if (snap)
		*snap = d->snap;
	if (!*mm)
		ret = -ECHILD;
	else if (snap && !*snap && !det_wlog_on(*mm))
		ret = -ENODATA;
	if (!ret) {
		mmget(*mm);
		if (snap && *snap)
			mmget(*snap);
	}
	spin_unlock(&d->lock);
	return ret;
}

/* ---- requests the child runs in its own context ---- */

static int det_req_zero(struct det_req *r)
{
	unsigned long addr;
	int ret;

	/* Zeros replace what was there without a fault: log it first. */
	if (det_wlog_on(current->mm)) {
		ret = det_wlog_zap(current->mm, r->start, r->start + r->size);
		if (ret)
			return ret;
	}
	if (!r->prot)
		return vm_munmap(r->start, r->size);
	addr = vm_mmap(NULL, r->start, r->size, r->prot,
		       MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, 0);
	return IS_ERR_VALUE(addr) ? (int)addr : 0;
}

static int det_req_perm(struct det_req *r)
{
	return do_mprotect_pkey(r->start, r->size, r->prot, -1);
}

/*
 * Switch the current (stopped, single-threaded) deterministic process to
 * the address space @r->mm, with exec's own switch (exec_mm_switch()) and
 * its locks, and drop its clock pages again: the new image is a copy of
 * its parent's, which, for a master, has a vDSO.
 */
static int det_req_install(struct det_req *r)
{
	struct task_struct *tsk = current;
	struct mm_struct *old = tsk->mm;
	int ret;

	ret = down_write_killable(&tsk->signal->exec_update_lock);
	if (ret)
		return ret;
	ret = mmap_read_lock_killable(old);
	if (ret) {
		up_write(&tsk->signal->exec_update_lock);
		return ret;
	}
	mmget(r->mm);		/* the task's own reference */
	WARN_ON_ONCE(exec_mm_switch(r->mm) != old);
	mmap_read_unlock(old);
	up_write(&tsk->signal->exec_update_lock);
	mm_update_next_owner(old);
	mmput(old);
	det_drop_outside();
	return 0;
}

/*
 * DET_VM_ZERO (@zero; @prot 0 unmaps) or DET_PERM over the child's
 * [@start, @start+@size), @prot in PROT_* bits.
 */
int det_vm_map(struct det_proc *d, bool zero, unsigned long start,
	       unsigned long size, unsigned long prot)
{
	struct det_req r = { .fn = zero ? det_req_zero : det_req_perm,
			     .start = start, .size = size, .prot = prot };

	if (!size)
		return det_dead(d) ? -ECHILD : 0;
	return det_call(d, &r);
}

/*
 * May a snapshot leave out @mm's [@start, @end)?  Where nothing is
 * mapped, or private anonymous memory is: there an empty entry reads
 * zeros, elsewhere the file's or a device's contents.
 */
static bool det_except_ok(struct mm_struct *mm, unsigned long start,
			  unsigned long end)
{
	VMA_ITERATOR(vmi, mm, start);
	struct vm_area_struct *vma;

	mmap_assert_locked(mm);
	for_each_vma_range(vmi, vma, end)
		if (!vma_is_anonymous(vma) ||
		    (vma->vm_flags & (VM_SHARED | VM_SPECIAL)))
			return false;
	return true;
}

/* DET_SNAP_EXCEPT's range checked against the caller's own mappings. */
int det_snap_except_ok(const struct det_range *except)
{
	struct mm_struct *mm = current->mm;
	bool ok;

	if (!except->size)
		return 0;
	if (mmap_read_lock_killable(mm))
		return -EINTR;
	ok = det_except_ok(mm, except->start, except->start + except->size);
	mmap_read_unlock(mm);
	return ok ? 0 : -EINVAL;
}

/*
 * Leave @except out of @mm, a snapshot no task runs in yet: its pages
 * there go, without a note in the log, so that the child's copy and its
 * reference read zeros, and the caller's pages there are its own again.
 * The caller checked the range against its mappings, which @mm copies;
 * checked again, since a master's other threads may have changed them.
 * det_snap_give() empties the caller's own mapping of a range with it.
 */
static int det_snap_leave_out(struct mm_struct *mm,
			      const struct det_range *except)
{
	VMA_ITERATOR(vmi, mm, except->start);
	unsigned long start = except->start, end = start + except->size;
	struct vm_area_struct *vma;
	int ret = 0;

	if (!except->size)
		return 0;
	if (mmap_read_lock_killable(mm))
		return -EINTR;
	if (!det_except_ok(mm, start, end))
		ret = -EINVAL;
	else
		for_each_vma_range(vmi, vma, end)
			zap_page_range_single(vma, max(start, vma->vm_start),
					      min(end, vma->vm_end) -
					      max(start, vma->vm_start),
					      NULL);
	mmap_read_unlock(mm);
	return ret;
}

/*
 * @except left out of child @d's copy, just brought up to date in place.
 * A copy that still holds the range must never run.
 */
static int det_snap_except_in_place(struct det_proc *d,
				    const struct det_range *except)
{
	struct mm_struct *mm;
	int ret;

	ret = det_mm_get(d, &mm, NULL);
	if (ret)
		return ret;
	ret = det_snap_leave_out(mm, except);
	mmput(mm);
	if (ret)
		det_sigkill(d);
	return ret;
}

/*
 * The huge pages @mm, a snapshot no task runs in yet, maps in [@start,
 * @end), a range about to be handed to it, split into small pages where
 * they can be: do_wp_page() reuses a small page mapped once, but copies
 * one of a large folio, and the child is to write the pages it is handed
 * without copying them.  The split is the kernel's own, which maps the
 * caller's share of the folio page by page as well.  A folio that cannot
 * be split now (pinned, locked, under writeback) stays whole, and the
 * child copies its pages when it writes them, as without the range.
 */
static void det_split_given(struct mm_struct *mm, unsigned long start,
			    unsigned long end)
{
	unsigned long addr, next, empty;
	struct folio *folio;
	spinlock_t *ptl;
	pmd_t *pmdp, pmd;

	mmap_read_lock(mm);
	for (addr = start; addr < end; addr = next) {
		next = pmd_addr_end(addr, end);
		pmdp = det_find_pmd(mm, addr, &empty);
		if (!pmdp) {
			if (empty)
				next = max(next, min(empty, end));
			continue;
		}
		folio = NULL;
		ptl = pmd_lock(mm, pmdp);
		pmd = pmdp_get(pmdp);
		if (pmd_trans_huge(pmd) && !is_huge_zero_pmd(pmd)) {
			folio = pmd_folio(pmd);
			folio_get(folio);
		}
		spin_unlock(ptl);
		if (!folio)
			continue;
		if (folio_test_anon(folio) && folio_trylock(folio)) {
			split_folio(folio);
			folio_unlock(folio);
		}
		folio_put(folio);
		cond_resched();
	}
	mmap_read_unlock(mm);
}

/*
 * DET_SNAP_GIVE: child @d's snapshot, just made, holds the caller's pages
 * in @give; its merge is to take back whatever it holds there, and the
 * caller is to read zeros there meanwhile.  So the snapshot reads zeros
 * there: each page the child maps there is logged as written over
 * nothing (det_wlog_give()), or its reference leaves the range out.  The
 * caller's mapping then goes (logged first where the caller is itself a
 * logged child, as DET_VM_ZERO's is), and each page is the child's
 * alone: its first write there reuses the page instead of copying it (a
 * huge page split first: det_split_given()).
 * A child that cannot be given the range is killed: its snapshot would
 * hold the range twice.  The caller's pages stay where the caller's
 * mapping could not be emptied, but for a caller being killed, or a
 * master whose other threads changed the mapping meanwhile.
 */
static int det_snap_give(struct det_proc *d, const struct det_range *give)
{
	unsigned long start = give->start, end = start + give->size;
	struct mm_struct *mm, *ref;
	int ret;

	if (!give->size)
		return 0;
	ret = det_mm_get(d, &mm, &ref);
	if (ret)
		return ret;
	if (ref) {
		ret = det_snap_leave_out(ref, give);
	} else {
		det_split_given(mm, start, end);
		ret = det_wlog_give(mm, start, end);
	}
	if (!ret && det_wlog_on(current->mm))
		ret = det_wlog_zap(current->mm, start, end);
	if (!ret)
		ret = det_snap_leave_out(current->mm, give);
	if (ref)
		mmput(ref);
	mmput(mm);
	if (ret)
		det_sigkill(d);
	return ret;
}

/* det_snap() but for the range it hands over. */
static int det_snap_copy(struct det_proc *d, bool created,
			 const struct det_range *except)
{
	struct mm_struct *mm = current->mm, *child = NULL, *ref = NULL;
	struct mm_struct *made = NULL;
	struct det_req r = { .fn = det_req_install };
	bool logged, touched = false;
	int ret;

	if (det_dead(d))
		return -ECHILD;
	if (created) {
		/* det_create() checked, copied and logged it just now. */
		ret = det_mm_get(d, &made, NULL);
		if (ret)
			return ret;
		logged = det_wlog_on(made);
		ret = except ? det_snap_leave_out(made, except) : 0;
		if (ret)
			goto fail;
	} else {
		ret = det_check_outside(mm);
		if (ret)
			return ret;
		ret = det_resnap(d, &touched);
		if (!ret && except)
			return det_snap_except_in_place(d, except);
		if (ret != -EAGAIN && (!ret || !touched))
			return ret;
		ret = -ENOMEM;
		child = dup_mm(d->task, mm);
		if (!child)
			goto fail;
		/* Logged before its files are made its own: those are writes. */
		logged = det_wlog_usable(mm, child);
		ret = logged ? det_wlog_start(child) : 0;
		if (!ret)
			ret = det_privatize_files(child);
		if (!ret && except)
			ret = det_snap_leave_out(child, except);
		if (ret)
			goto fail;
	}
	if (!logged) {
		/*
		 * A copy of the child's copy, which has not run yet, not of
		 * the caller: another process may write the caller's memory
		 * in between (process_vm_writev()), and what it writes must
		 * not tell the reference from the child's snapshot.
		 */
		ret = -ENOMEM;
		ref = dup_mm(current, made ?: child);
		if (!ref)
			goto fail;
		/* Nothing runs in the reference: keep khugepaged out of it. */
		set_bit(MMF_DISABLE_THP, &ref->flags);
	}
	if (made) {
		mmput(made);
		made = NULL;
	}

	if (child) {
		r.mm = child;
		ret = det_call(d, &r);
		if (ret)
			goto fail;
	}
	det_mm_set(d, child, ref);
	return 0;
fail:
	if (made)
		mmput(made);
	if (ref)
		mmput(ref);
	if (child)
		mmput(child);
	/* Half brought up to date and not replaced: it must never run. */
	if (touched)
		det_sigkill(d);
	return ret;
}

/*
 * DET_SNAP.  A child created by this very dput() already is a fork()
 * copy of the caller, logged where it can be (det_create()).  A child
 * holding an earlier logged snapshot of the caller is brought up to date
 * in place where its mappings allow (det_resnap()).  Otherwise a new
 * copy, logged from the start where it can be, replaces its address
 * space.  Where there is no log, a second copy becomes the reference.
 * If a child changed in place cannot be given a new copy either, it is
 * killed (DET_S_EXCEPT_DEAD) rather than run on a half-made snapshot.
 * @ranges, if not NULL, are DET_SNAP_EXCEPT's and DET_SNAP_GIVE's (size
 * 0: none): the first is left out of the copy (det_snap_leave_out())
 * before the reference is made from it, the second handed to the child
 * once the snapshot is made (det_snap_give()).
 */
int det_snap(struct det_proc *d, bool created,
	     const struct det_range *ranges)
{
	int ret;

	ret = det_snap_copy(d, created, ranges ? &ranges[0] : NULL);
	if (!ret && ranges)
		ret = det_snap_give(d, &ranges[1]);
	return ret;
}

/* ---- copying between the caller and a child's mm ---- */

/*
 * The PMD entry of @mm covering @addr, if a page table reaches it.  Else
 * NULL, and *@empty is the end of the empty stretch @addr lies in (the
 * whole PGD, P4D or PUD entry is empty), or 0 when the entry above is bad
 * or maps a huge page itself.  Caller holds @mm's mmap lock.
 */
pmd_t *det_find_pmd(struct mm_struct *mm, unsigned long addr,
		    unsigned long *empty)
{
	pud_t *pudp, pud;
	p4d_t *p4dp;
	pgd_t *pgdp;

	mmap_assert_locked(mm);
	*empty = 0;
	pgdp = pgd_offset(mm, addr);
	if (pgd_none(*pgdp)) {
		*empty = pgd_addr_end(addr, TASK_SIZE_MAX);
		return NULL;
	}
	if (pgd_bad(*pgdp))
		return NULL;
	p4dp = p4d_offset(pgdp, addr);
	if (p4d_none(*p4dp)) {
		*empty = p4d_addr_end(addr, TASK_SIZE_MAX);
		return NULL;
	}
	if (p4d_bad(*p4dp))
		return NULL;
	pudp = pud_offset(p4dp, addr);
	pud = READ_ONCE(*pudp);
	if (pud_none(pud)) {
		*empty = pud_addr_end(addr, TASK_SIZE_MAX);
		return NULL;
	}
	if (!pud_present(pud) || pud_leaf(pud) || pud_bad(pud))
		return NULL;
	return pmd_offset(pudp, addr);
}


/*
 * Take references on up to @nr pages of @mm from @addr, under its mmap
 * lock: returns how many (at least 1), -EINTR, or -EFAULT if @addr itself
 * is not mapped.
 */
long det_gup(struct mm_struct *mm, unsigned long addr, unsigned long nr,
	     unsigned int gup, struct page **pages)
{
	long got;

	if (mmap_read_lock_killable(mm))
		return -EINTR;
	got = get_user_pages_remote(mm, addr, nr, gup, pages, NULL);
	mmap_read_unlock(mm);
	if (got > 0)
		return got;
	return got == -EINTR ? -EINTR : -EFAULT;
}

/*
 * Does @mm's page at @addr read as zeros with nothing there: private
 * anonymous memory never populated, or the zero page?  Caller holds @mm's
 * mmap lock.
 */
bool det_unpopulated(struct mm_struct *mm, unsigned long addr)
{
	struct vm_area_struct *vma = vma_lookup(mm, addr);
	unsigned long empty;
	pmd_t *pmdp, pmd;
	spinlock_t *ptl;
	pte_t *pte, e;
	bool none;

	mmap_assert_locked(mm);
	if (!vma || !vma_is_anonymous(vma))
		return false;
	pmdp = det_find_pmd(mm, addr, &empty);
	if (!pmdp)
		return empty;
	pmd = pmdp_get_lockless(pmdp);
	if (pmd_none(pmd))
		return true;
	if (!pmd_present(pmd))
		return false;
	if (pmd_leaf(pmd))
		return is_huge_zero_pmd(pmd);
	pte = pte_offset_map_lock(mm, pmdp, addr, &ptl);
	if (!pte)
		return false;
	e = ptep_get(pte);
	none = pte_none(e) || (pte_present(e) && is_zero_pfn(pte_pfn(e)));
	pte_unmap_unlock(pte, ptl);
	return none;
}

/*
 * Do @mm's bytes [@addr, @addr+@n), within one page, read as zeros?  The
 * caller's own memory is read as user memory, another mm's through a
 * reference to its page; an unpopulated page is neither faulted in nor
 * allocated.  Returns 1 or 0 (also when unmapped: the copy then reports
 * it), or -EINTR.
 */
static int det_zeros(struct mm_struct *mm, unsigned long addr,
		     unsigned long n)
{
	struct page *page;
	bool zero;
	long got;
	char *k;

	if (mmap_read_lock_killable(mm))
		return -EINTR;
	zero = det_unpopulated(mm, addr);
	mmap_read_unlock(mm);
	if (zero)
		return 1;
	if (mm == current->mm)
		return check_zeroed_user((void __user *)addr, n) == 1;
	got = det_gup(mm, addr & PAGE_MASK, 1, FOLL_FORCE, &page);
	if (got < 0)
		return got == -EINTR ? -EINTR : 0;
	k = kmap_local_page(page);
	zero = !memchr_inv(k + (addr & ~PAGE_MASK), 0, n);
	kunmap_local(k);
	put_page(page);
	return zero;
}

/*
 * Copy @n bytes, within one page of @mm, between the caller's @uaddr and
 * @mm's @raddr: into @mm if @put.  Zeros over zeros are no change: then
 * nothing is faulted in, written or allocated on either side.
 */
static int det_copy_page(struct mm_struct *mm, bool put, unsigned long uaddr,
			 unsigned long raddr, unsigned long n)
{
	struct mm_struct *src = put ? current->mm : mm;
	struct mm_struct *dst = put ? mm : current->mm;
	unsigned long left;
	struct page *page;
	long got;
	char *k;
	int ret;

	ret = det_zeros(src, put ? uaddr : raddr, n);
	if (ret > 0)
		ret = det_zeros(dst, put ? raddr : uaddr, n);
	if (ret)
		return ret < 0 ? ret : 0;

	got = det_gup(mm, raddr & PAGE_MASK, 1,
		      FOLL_FORCE | (put ? FOLL_WRITE : 0), &page);
	if (got < 0)
		return got;
	k = kmap_local_page(page) + (raddr & ~PAGE_MASK);
	if (put)
		left = copy_from_user(k, (void __user *)uaddr, n);
	else
		left = copy_to_user((void __user *)uaddr, k, n);
	kunmap_local(k);
	if (put)
		set_page_dirty_lock(page);
	put_page(page);
	return left ? -EFAULT : 0;
}

/*
 * Copy @size bytes between the caller's @uaddr and @mm's @raddr, child
 * @d's: into @mm if @put.  @mm's pages must be mapped; writes into them
 * break copy-on-write and go through read-only protection, like ptrace's.
 * Stops with -ECHILD as soon as @d dies of a signal: nothing more is
 * faulted into a child whose memory is being freed.
 */
static int det_copy_remote(struct det_proc *d, struct mm_struct *mm,
			   bool put, unsigned long uaddr, unsigned long raddr,
			   unsigned long size)
{
	int ret;

	while (size) {
		unsigned long n = min_t(unsigned long, size,
					PAGE_SIZE - (raddr & ~PAGE_MASK));

		if (fatal_signal_pending(current))
			return -EINTR;
		if (det_killed(d))
			return -ECHILD;
		ret = det_copy_page(mm, put, uaddr, raddr, n);
		if (ret)
			return ret;
		uaddr += n;
		raddr += n;
		size -= n;
		cond_resched();
	}
	return 0;
}

/*
 * DET_VM_COPY: put copies the caller's @start to the child's @dst, get the
 * child's @dst to the caller's @start.  @start is always the caller's
 * address, as in v3.0-det and Determinator.
 */
int det_vm_copy(struct det_proc *d, bool put, unsigned long start,
		unsigned long size, unsigned long dst)
{
	struct mm_struct *mm;
	int ret;

	if (put && det_dead(d))
		return -ECHILD;
	if (!size)
		return 0;
	ret = det_mm_get(d, &mm, NULL);
	if (ret)
		return ret;
	ret = det_copy_remote(d, mm, put, start, dst, size);
	mmput(mm);
	return ret;
}

