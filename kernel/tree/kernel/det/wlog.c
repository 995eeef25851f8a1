// SPDX-License-Identifier: GPL-2.0-only
/*
 * Deterministic process groups: the write log of a snapshotted child.
 *
 * DET_SNAP gives a child a copy-on-write copy of its parent (dup_mm(), as
 * fork() does).  A merge needs, for every page the child changed, what the
 * snapshot held there.  Rather than keep a second copy of the whole
 * address space for that, the child's mm logs its writes: each page's
 * first write since the snapshot faults (see below), and the core calls
 * det_wlog_note() there, which keeps the page the child mapped until then
 * - the snapshot's page - with a reference, or notes that nothing was
 * mapped (the snapshot read zeros).  The fault then copies the page, so
 * that nothing writes the logged one in place again.  The merge (merge.c)
 * visits only logged addresses, and reads the snapshot's bytes from the
 * log.
 *
 * Invariant: in a logged mm, an anonymous page mapped writable, or
 * exclusively, is at a logged address.  What keeps it:
 *   - dup_mm() write-protects and shares every anonymous page, except a
 *     page pinned for DMA, which it copies at once, writable: a parent
 *     with pinned pages gets a reference copy instead (det_wlog_usable());
 *     a snapshot made in place (det_resnap()) shares the caller's pages
 *     so too, or copies into a page of the child's own, write-protected
 *     and no longer exclusive;
 *   - do_wp_page() logs before it would reuse a page, and copies a page it
 *     has just logged; do_anonymous_page() and do_cow_fault() log a first
 *     write where nothing was mapped (the snapshot read zeros, or the
 *     file's page);
 *   - do_swap_page() and can_change_pte_writable() (mprotect(), NUMA
 *     hinting) never make an unlogged page writable;
 *   - do_huge_pmd_wp_page() splits a huge page rather than reuse it, and
 *     MMF_DISABLE_THP keeps new huge pages and khugepaged out;
 *   - hugetlb mappings, with their own fault path, get a reference copy;
 *   - the subsystem's own writes that do not fault log first: DET_VM_ZERO
 *     (det_wlog_zap()) and a merge into a logged caller (merge.c).
 * A deterministic process makes no other system call that could change
 * its mappings.
 */

#include <linux/hugetlb.h>
#include <linux/mm.h>
#include <linux/sched/coredump.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include "internal.h"

struct det_wlog {
	/*
	 * page index -> the snapshot's struct page (referenced), or ZERO.
	 * DET_WLOG_NOW marks the entries of the current snapshot; the others
	 * are an earlier snapshot's, kept so that their slots are there to
	 * reuse (det_wlog_restart()).
	 */
	struct xarray pages;
	/* Entries of earlier snapshots, and their pages' references. */
	unsigned long stale;
	/* Drops a log det_wlog_restart() replaced, off the caller's path. */
	struct work_struct drop;
};

#define DET_WLOG_ZERO	xa_mk_value(0)
#define DET_WLOG_NOW	XA_MARK_0
/* Entries of earlier snapshots a log keeps at most. */
#define DET_WLOG_STALE_MAX	64

/*
 * May a write log of @child, just duplicated from @parent, stand for the
 * reference?  Not if dup_mm() copied pinned pages writable, nor with
 * hugetlb mappings.
 */
bool det_wlog_usable(struct mm_struct *parent, struct mm_struct *child)
{
	VMA_ITERATOR(vmi, child, 0);
	struct vm_area_struct *vma;
	bool ok = true;

	if (test_bit(MMF_HAS_PINNED, &parent->flags))
		return false;
	mmap_read_lock(child);
	for_each_vma(vmi, vma) {
		if (is_vm_hugetlb_page(vma)) {
			ok = false;
			break;
		}
	}
	mmap_read_unlock(child);
	return ok;
}

/* A new empty log, or NULL. */
static struct det_wlog *det_wlog_alloc(void)
{
	struct det_wlog *log = kmalloc(sizeof(*log), GFP_KERNEL_ACCOUNT);

	if (log)
		xa_init(&log->pages);
	return log;
}

/*
 * Start logging @mm, a new copy no task has run in yet.  From here on its
 * writes are logged, including the ones det_privatize_files() makes.
 */
int det_wlog_start(struct mm_struct *mm)
{
	struct det_wlog *log = det_wlog_alloc();

	if (!log)
		return -ENOMEM;
	set_bit(MMF_DISABLE_THP, &mm->flags);
	WRITE_ONCE(mm->det_wlog, log);
	return 0;
}

/* Drop every entry of @log, which nothing else reads or writes now. */
static void det_wlog_empty(struct det_wlog *log)
{
	unsigned long idx;
	void *entry;

	xa_for_each(&log->pages, idx, entry) {
		if (!xa_is_value(entry))
			put_page(entry);
		if (!(idx & 1023))
			cond_resched();
	}
	xa_destroy(&log->pages);
}

/* Hook from __mmput(), after exit_mmap(): nothing can fault any more. */
void det_mm_exit(struct mm_struct *mm)
{
	struct det_wlog *log = mm->det_wlog;

	if (!log)
		return;
	mm->det_wlog = NULL;
	det_wlog_empty(log);
	kfree(log);
}

static void det_wlog_drop(struct work_struct *work)
{
	struct det_wlog *log = container_of(work, struct det_wlog, drop);

	det_wlog_empty(log);
	kfree(log);
}

/*
 * Start logging @mm again from empty: its pages have just been made the
 * new snapshot's (det_resnap()).  Caller holds its mmap lock for writing
 * and no task runs in it, so nothing else reads the log.
 *
 * The entries only lose their mark: a child that writes the same pages
 * in each round (its stack, its runtime's state) finds their slots there,
 * where a new log would allocate a path of xarray nodes for each and free
 * them again (under TCG, about 20 of each a round for a child that
 * writes four pages far apart).  det_wlog_note() replaces such an entry,
 * and its old page, when the page is written again.  Once more than
 * DET_WLOG_STALE_MAX entries are an earlier snapshot's, a new log
 * replaces the old one, which a worker drops: freeing its xarray nodes
 * one by one took 59 us of a 170 us snapshot under TCG.
 */
void det_wlog_restart(struct mm_struct *mm)
{
	struct det_wlog *old = mm->det_wlog, *log;
	XA_STATE(xas, &old->pages, 0);
	unsigned long n = 0;
	void *entry;

	mmap_assert_write_locked(mm);
	if (xa_empty(&old->pages))
		return;
	xas_lock(&xas);
	xas_for_each_marked(&xas, entry, ULONG_MAX, DET_WLOG_NOW) {
		xas_clear_mark(&xas, DET_WLOG_NOW);
		n++;
	}
	xas_unlock(&xas);
	old->stale += n;
	if (old->stale <= DET_WLOG_STALE_MAX)
		return;
	log = det_wlog_alloc();
	if (!log) {
		det_wlog_empty(old);
		return;
	}
	WRITE_ONCE(mm->det_wlog, log);
	INIT_WORK(&old->drop, det_wlog_drop);
	queue_work(system_unbound_wq, &old->drop);
}

/**
 * det_wlog_note - log the first write to a page of a logged mm
 * @mm:		the logged address space (mm->det_wlog set).
 * @addr:	the address written.
 * @page:	the page mapped there until now, NULL if none (or the zero
 *		page).
 * @gfp:	for the log's memory; GFP_NOWAIT under a page table lock.
 *
 * Return: 1 if @page is now the logged original (the caller must copy it,
 * never write it), 0 if @addr was logged already, -ENOMEM.
 */
int det_wlog_note(struct mm_struct *mm, unsigned long addr, struct page *page,
		  gfp_t gfp)
{
	struct det_wlog *log = READ_ONCE(mm->det_wlog);
	XA_STATE(xas, log ? &log->pages : NULL, addr >> PAGE_SHIFT);
	void *old;
	int ret;

	if (!log || xa_get_mark(&log->pages, xas.xa_index, DET_WLOG_NOW))
		return 0;
	if (page)
		get_page(page);
	do {
		xas_lock(&xas);
		old = xas_load(&xas);
		ret = 0;
		if (!xas_get_mark(&xas, DET_WLOG_NOW)) {
			/* Empty, reserved, or an earlier snapshot's entry. */
			xas_store(&xas, page ?: DET_WLOG_ZERO);
			if (!xas_error(&xas)) {
				xas_set_mark(&xas, DET_WLOG_NOW);
				ret = 1;
				if (old && !xa_is_zero(old))
					log->stale--;
			}
		}
		xas_unlock(&xas);
	} while (xas_nomem(&xas, gfp));
	if (ret != 1) {
		if (page)
			put_page(page);
		return xas_error(&xas) ?: 0;
	}
	/* The earlier snapshot's page that the entry held. */
	if (old && !xa_is_zero(old) && !xa_is_value(old))
		put_page(old);
	return 1;
}

/*
 * do_wp_page() could not log without sleeping: reserve the log's slot for
 * @addr, so that the retried fault logs without allocating.
 */
vm_fault_t det_wlog_reserve(struct mm_struct *mm, unsigned long addr)
{
	struct det_wlog *log = READ_ONCE(mm->det_wlog);

	if (xa_reserve(&log->pages, addr >> PAGE_SHIFT, GFP_KERNEL))
		return VM_FAULT_OOM;
	return 0;
}

bool __det_wlog_pending(struct mm_struct *mm, unsigned long addr)
{
	return !det_wlog_has(mm, addr);
}

/* Is @addr of logged @mm logged since its snapshot? */
bool det_wlog_has(struct mm_struct *mm, unsigned long addr)
{
	return xa_get_mark(&READ_ONCE(mm->det_wlog)->pages,
			   addr >> PAGE_SHIFT, DET_WLOG_NOW);
}

/*
 * The first logged address of @mm at or after *@addr and below @end: true
 * and *@addr set to it, or false.
 */
bool det_wlog_next(struct mm_struct *mm, unsigned long *addr,
		   unsigned long end)
{
	unsigned long idx = *addr >> PAGE_SHIFT;

	if (*addr >= end ||
	    !xa_find(&mm->det_wlog->pages, &idx, (end - 1) >> PAGE_SHIFT,
		     DET_WLOG_NOW))
		return false;
	*addr = idx << PAGE_SHIFT;
	return true;
}

/*
 * The logged addresses of @mm in [@addr, @end), inside the PMD-sized
 * block at @base: the index in the block of each, in address order, into
 * @idx, and the pfn of the page the snapshot held there into @pfn at that
 * index, 0 where it held zeros.  No reference is taken: an entry of the
 * current snapshot is dropped only with the mm, which the caller holds,
 * or by the next snapshot, which cannot come while the caller merges, so
 * pfn_to_page() of one stays valid as long.  Returns how many.  One walk
 * of the log, where a lookup per address would walk it again for each.
 */
unsigned int det_wlog_block(struct mm_struct *mm, unsigned long base,
			    unsigned long addr, unsigned long end, u16 *idx,
			    unsigned long *pfn)
{
	XA_STATE(xas, &mm->det_wlog->pages, addr >> PAGE_SHIFT);
	unsigned int n = 0;
	unsigned long i;
	void *entry;

	rcu_read_lock();
	xas_for_each_marked(&xas, entry, (end - 1) >> PAGE_SHIFT,
			    DET_WLOG_NOW) {
		if (xas_retry(&xas, entry))
			continue;
		i = xas.xa_index - (base >> PAGE_SHIFT);
		idx[n++] = i;
		pfn[i] = xa_is_value(entry) ? 0 : page_to_pfn(entry);
	}
	rcu_read_unlock();
	return n;
}

/*
 * Before something other than a fault changes the page of logged @mm at
 * @addr (a merge into it, DET_VM_ZERO): if it is not logged yet, log the
 * page there now, which still is the snapshot's.
 */
int det_wlog_prepare(struct mm_struct *mm, unsigned long addr)
{
	struct page *page;
	int ret;

	if (det_wlog_has(mm, addr))
		return 0;
	ret = det_gup(mm, addr, 1, FOLL_FORCE, &page);
	if (ret != 1)
		return ret < 0 ? ret : -EFAULT;
	ret = det_wlog_note(mm, addr, is_zero_page(page) ? NULL : page,
			    GFP_KERNEL);
	put_page(page);
	return min(ret, 0);
}

/*
 * Before DET_VM_ZERO replaces [@start, @end) of logged @mm (the caller's
 * own): log every populated page there not written yet.  The walk skips
 * what no page table reaches, so its cost follows what is populated.
 */
int det_wlog_zap(struct mm_struct *mm, unsigned long start, unsigned long end)
{
	unsigned long addr = start & PAGE_MASK, next, empty;
	struct vm_area_struct *vma;
	pmd_t *pmdp;
	bool todo;
	int ret;

	while (addr < end) {
		next = pmd_addr_end(addr, end);
		if (mmap_read_lock_killable(mm))
			return -EINTR;
		pmdp = det_find_pmd(mm, addr, &empty);
		if (!pmdp && empty)
			next = max(next, min(empty, end));
		else if (!pmdp || !pmd_none(pmdp_get_lockless(pmdp)))
			next = addr + PAGE_SIZE;	/* look at this page */
		todo = next == addr + PAGE_SIZE && !det_wlog_has(mm, addr) &&
		       !det_unpopulated(mm, addr);
		vma = todo ? vma_lookup(mm, addr) : NULL;
		todo = vma && !(vma->vm_flags & (VM_SHARED | VM_SPECIAL));
		mmap_read_unlock(mm);
		if (todo) {
			ret = det_wlog_prepare(mm, addr);
			if (ret)
				return ret;
		}
		addr = next;
		cond_resched();
	}
	return 0;
}

/*
 * DET_SNAP_GIVE: log each page @mm, a snapshot no task runs in yet, maps
 * in [@start, @end) as written over nothing.  Its merge then takes the
 * page back whole, against zeros; and once nothing else maps it, the
 * child's first write to it reuses it rather than copying it (it is
 * logged, so the invariant holds).  An address logged already keeps its
 * entry.  One look at each page table the range reaches, logging what it
 * found once the table's lock is dropped; a huge or odd PMD entry counts
 * as mapping all its pages.
 */
int det_wlog_give(struct mm_struct *mm, unsigned long start, unsigned long end)
{
	DECLARE_BITMAP(mapped, PTRS_PER_PTE);
	unsigned long addr, next, empty, base, a, i, k;
	spinlock_t *ptl;
	pmd_t *pmdp;
	pte_t *pte, e;
	int ret = 0;

	if (mmap_read_lock_killable(mm))
		return -EINTR;
	for (addr = start; addr < end && !ret; addr = next) {
		next = pmd_addr_end(addr, end);
		base = addr & PMD_MASK;
		pmdp = det_find_pmd(mm, addr, &empty);
		if (!pmdp && empty) {
			next = max(next, min(empty, end));
			continue;
		}
		bitmap_zero(mapped, PTRS_PER_PTE);
		pte = pmdp && !pmd_leaf(pmdp_get_lockless(pmdp)) ?
		      pte_offset_map_lock(mm, pmdp, addr, &ptl) : NULL;
		if (pte) {
			for (a = addr, k = 0; a < next; a += PAGE_SIZE, k++) {
				e = ptep_get(pte + k);
				if (!pte_none(e) && !(pte_present(e) &&
						      is_zero_pfn(pte_pfn(e))))
					__set_bit((a - base) >> PAGE_SHIFT,
						  mapped);
			}
			pte_unmap_unlock(pte, ptl);
		} else if (!pmdp || !pmd_none(pmdp_get_lockless(pmdp))) {
			bitmap_set(mapped, (addr - base) >> PAGE_SHIFT,
				   (next - addr) >> PAGE_SHIFT);
		}
		for_each_set_bit(i, mapped, PTRS_PER_PTE) {
			ret = det_wlog_note(mm, base + i * PAGE_SIZE, NULL,
					    GFP_KERNEL);
			if (ret < 0)
				break;
			ret = 0;
		}
		cond_resched();
	}
	mmap_read_unlock(mm);
	return ret;
}
