// SPDX-License-Identifier: GPL-2.0-only
/*
 * Deterministic process groups: memory operations.
 *
 * DET_VM_ZERO and DET_PERM change the child's mappings, so the child runs
 * them itself, in its own context, as the mmap()/mprotect() it may not
 * call (det_call(): the parent hands the request over and waits).
 * DET_VM_COPY and DET_MERGE run in the caller's context: the caller's side
 * is plain user memory, the child's side (and the snapshot reference) are
 * reached through get_user_pages_remote() on the child's mm, which the
 * parent keeps referenced (det_proc.mm) so that it outlives the child's
 * exit.
 *
 * DET_SNAP copies the caller's address space with dup_mm(), exactly as
 * fork() does: once for the child (or, for a new child, the fork that
 * creates it) and once for the reference (det_proc.snap), a second
 * copy-on-write image no task runs in.
 *
 * DET_MERGE's cost follows what changed.  It walks the child's and the
 * reference's page tables one PMD (2 MiB) at a time and compares, per page,
 * which physical page each maps:
 *
 *   - same page in both (or nothing in both): the child never wrote it,
 *     since a write would have broken copy-on-write with the reference -
 *     skipped without reading it; so is a page-cache page in the child (a
 *     private write always makes an anonymous copy);
 *   - the child's differs, the caller still maps the reference's page: if
 *     the child's bytes differ from the reference's, only the child changed
 *     it - taken whole: a fresh copy of the child's page replaces the
 *     caller's in its page table (one copy, no fault; det_install_copy());
 *   - otherwise both sides may have changed it: three-way byte compare.
 *
 * Page identities only say where to look; the report counts what the
 * bytes say, so it is the same however pages happen to be shared.
 *
 * The merge is all or nothing.  A first pass classifies every page,
 * compares the two-sided ones for conflicts and, if there are none,
 * prepares everything the writing needs: each page's final contents in a
 * new page (det_merge_fill()), and under the caller's mmap lock a page
 * table for each (det_merge_ready()), or a pin on the caller's page where
 * its mapping cannot take a new one.  Any failure (a conflict, memory, a
 * page the caller cannot take) ends the merge there, with nothing written.
 * The second pass (det_merge_commit()), still under that lock, only
 * installs pages and copies into pinned ones: it cannot fail.
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

/* Page identities from det_block_pfns(). */
#define DET_PFN_NONE	0UL	/* nothing mapped, or the zero page */
#define DET_PFN_UNKNOWN	(~0UL)	/* not present (migration, ...): compare */
#define DET_PFN_FILE	(1UL << 62)	/* with a pfn: not an anonymous page */

/*
 * A page a private mapping maps that is not anonymous (a page-cache page)
 * was never written through it: a private write always makes an anonymous
 * copy.
 */
static bool det_pfn_unwritten(unsigned long pfn)
{
	return pfn != DET_PFN_UNKNOWN && (pfn & DET_PFN_FILE);
}

/* @pfn, tagged DET_PFN_FILE if it is a page but not an anonymous one. */
static unsigned long det_pfn_tag(unsigned long pfn)
{
	if (pfn_valid(pfn) && !folio_test_anon(page_folio(pfn_to_page(pfn))))
		return pfn | DET_PFN_FILE;
	return pfn;
}

#define DET_GUP_BATCH	64

/* ---- the parent's references on a child's address spaces ---- */

/*
 * Replace child @d's address space (if @mm) and reference (if @snap) with
 * these, taking over the caller's references.  A child that died of a
 * signal has released its memory for good (det_mm_release()): then the
 * new ones are dropped instead.
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
		if (snap) {
			old_snap = d->snap;
			d->snap = snap;
		}
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
void det_mm_release(struct det_proc *d)
{
	struct mm_struct *mm, *snap;

	spin_lock(&d->lock);
	mm = d->mm;
	snap = d->snap;
	d->mm = NULL;
	d->snap = NULL;
	spin_unlock(&d->lock);
	if (mm)
		mmput(mm);
	if (snap)
		mmput(snap);
}

/*
 * References of the caller's own on child @d's address space and (if
 * @snap) its reference, for an operation: -ECHILD once the child died of a
 * signal (its memory is gone), -ENODATA if it has no snapshot.
 */
static int det_mm_get(struct det_proc *d, struct mm_struct **mm,
		      struct mm_struct **snap)
{
	int ret = 0;

	spin_lock(&d->lock);
	*mm = d->mm;
	if (snap)
		*snap = d->snap;
	if (!*mm)
		ret = -ECHILD;
	else if (snap && !*snap)
		ret = -ENODATA;
	if (!ret) {
		mmget(*mm);
		if (snap)
			mmget(*snap);
	}
	spin_unlock(&d->lock);
	return ret;
}

/* Has child @d died of a signal since the operation began? */
static bool det_killed(struct det_proc *d)
{
	return READ_ONCE(d->state) == DET_S_EXCEPT_DEAD;
}

/* ---- requests the child runs in its own context ---- */

static int det_req_zero(struct det_req *r)
{
	unsigned long addr;

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
 * the address space @r->mm, as exec does (exec_mmap()), and drop its clock
 * pages again: the new image is a copy of its parent's, which, for a
 * master, has a vDSO.
 */
static int det_req_install(struct det_req *r)
{
	struct task_struct *tsk = current;
	struct mm_struct *old = tsk->mm, *mm = r->mm, *active;
	int ret;

	ret = down_write_killable(&tsk->signal->exec_update_lock);
	if (ret)
		return ret;
	ret = mmap_read_lock_killable(old);
	if (ret) {
		up_write(&tsk->signal->exec_update_lock);
		return ret;
	}
	mmget(mm);		/* the task's own reference */
	task_lock(tsk);
	membarrier_exec_mmap(mm);
	local_irq_disable();
	active = tsk->active_mm;
	tsk->active_mm = mm;
	tsk->mm = mm;
	mm_init_cid(mm);
	if (!IS_ENABLED(CONFIG_ARCH_WANT_IRQS_OFF_ACTIVATE_MM))
		local_irq_enable();
	activate_mm(active, mm);
	if (IS_ENABLED(CONFIG_ARCH_WANT_IRQS_OFF_ACTIVATE_MM))
		local_irq_enable();
	lru_gen_add_mm(mm);
	task_unlock(tsk);
	lru_gen_use_mm(mm);
	mmap_read_unlock(old);
	up_write(&tsk->signal->exec_update_lock);
	WARN_ON_ONCE(active != old);
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
 * DET_SNAP.  A child created by this very dput() already is a fork()
 * copy of the caller; otherwise a new copy replaces its address space.
 * Either way a second copy becomes the reference.
 */
int det_snap(struct det_proc *d, bool created)
{
	struct mm_struct *mm = current->mm, *child = NULL, *ref;
	struct det_req r = { .fn = det_req_install };
	int ret;

	if (det_dead(d))
		return -ECHILD;
	ret = det_check_outside(mm);
	if (ret)
		return ret;
	if (!created) {
		child = dup_mm(d->task, mm);
		if (!child)
			return -ENOMEM;
		/* A new child's were made its own by det_create(). */
		ret = det_privatize_files(child);
		if (ret) {
			mmput(child);
			return ret;
		}
	}
	ref = dup_mm(current, mm);
	if (!ref) {
		if (child)
			mmput(child);
		return -ENOMEM;
	}
	/* Nothing runs in the reference: keep khugepaged out of it. */
	set_bit(MMF_DISABLE_THP, &ref->flags);

	if (child) {
		r.mm = child;
		ret = det_call(d, &r);
		if (ret) {
			mmput(child);
			mmput(ref);
			return ret;
		}
	}
	det_mm_set(d, child, ref);
	return 0;
}

/* ---- copying between the caller and a child's mm ---- */

/*
 * The PMD entry of @mm covering @addr, if a page table reaches it.  Else
 * NULL, and *@empty is the end of the empty stretch @addr lies in (the
 * whole PGD, P4D or PUD entry is empty), or 0 when the entry above is bad
 * or maps a huge page itself.  Caller holds @mm's mmap lock.
 */
static pmd_t *det_find_pmd(struct mm_struct *mm, unsigned long addr,
			   unsigned long *empty)
{
	pud_t *pudp, pud;
	p4d_t *p4dp;
	pgd_t *pgdp;

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
static long det_gup(struct mm_struct *mm, unsigned long addr,
		    unsigned long nr, unsigned int gup, struct page **pages)
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
static bool det_unpopulated(struct mm_struct *mm, unsigned long addr)
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

/* ---- merge ---- */

/*
 * The identity of each page @mm maps in the PMD-sized block at @addr: its
 * pfn, DET_PFN_NONE or DET_PFN_UNKNOWN.  Caller holds @mm's mmap lock.
 * Returns the end of the empty stretch of address space @addr lies in when
 * no page table reaches it at all (the whole PMD, PUD, P4D or PGD entry is
 * empty), so that unpopulated ranges are skipped a table at a time; else 0.
 */
static unsigned long det_block_pfns(struct mm_struct *mm, unsigned long addr,
				    unsigned long *pfn)
{
	unsigned long empty;
	pmd_t *pmdp, pmd;
	spinlock_t *ptl;
	pte_t *pte;
	int i;

	addr &= PMD_MASK;
	memset(pfn, 0, PTRS_PER_PTE * sizeof(*pfn));
	pmdp = det_find_pmd(mm, addr, &empty);
	if (!pmdp) {
		if (empty)
			return empty;
		goto unknown;
	}
	pmd = pmdp_get_lockless(pmdp);
	if (pmd_none(pmd))
		return pmd_addr_end(addr, TASK_SIZE_MAX);
	if (!pmd_present(pmd))
		goto unknown;
	if (pmd_leaf(pmd)) {
		/* Under the lock, so that the page stays what it is. */
		ptl = pmd_lock(mm, pmdp);
		pmd = pmdp_get(pmdp);
		if (pmd_present(pmd) && pmd_leaf(pmd) &&
		    !is_huge_zero_pmd(pmd)) {
			unsigned long tag = det_pfn_tag(pmd_pfn(pmd)) &
					    DET_PFN_FILE;

			for (i = 0; i < PTRS_PER_PTE; i++)
				pfn[i] = (pmd_pfn(pmd) + i) | tag;
		} else if (!pmd_none(pmd) && !is_huge_zero_pmd(pmd)) {
			spin_unlock(ptl);
			goto unknown;
		}
		spin_unlock(ptl);
		return 0;
	}
	pte = pte_offset_map_lock(mm, pmdp, addr, &ptl);
	if (!pte)
		goto unknown;
	for (i = 0; i < PTRS_PER_PTE; i++) {
		pte_t e = ptep_get(pte + i);

		if (pte_none(e))
			continue;
		if (!pte_present(e))
			pfn[i] = DET_PFN_UNKNOWN;
		else if (!is_zero_pfn(pte_pfn(e)))
			pfn[i] = det_pfn_tag(pte_pfn(e));
	}
	pte_unmap_unlock(pte, ptl);
	return 0;
unknown:
	for (i = 0; i < PTRS_PER_PTE; i++)
		pfn[i] = DET_PFN_UNKNOWN;
	return 0;
}

/* What happens to a page the child changed. */
#define DET_M_CHILD	1UL	/* only the child changed it: take it whole */
#define DET_M_BOTH	2UL	/* both did: byte merge */

/* Which sides' bytes differ from the reference's, by content. */
#define DET_CH_CHILD	1
#define DET_CH_CALLER	2

/*
 * One page the merge writes into the caller.  Pass 1 queues it (@addr,
 * low bits DET_M_*), prepares its final contents in @folio
 * (det_merge_fill()) and, where the caller's mapping cannot take a new
 * page, pins the caller's page (@pinned, det_merge_ready()).  Pass 2 only
 * installs or copies (det_merge_commit()).
 */
struct det_item {
	unsigned long addr;
	struct folio *folio;
	struct page *pinned;
};

/* The pages to write, in address order. */
struct det_todo {
	struct det_todo *next;
	unsigned int n;
	struct det_item item[(PAGE_SIZE - 16) / sizeof(struct det_item)];
};

struct det_merger {
	struct mm_struct *child, *ref;
	unsigned long start, end;
	struct det_merge rep;
	unsigned long *cp, *rp, *pp;	/* pfns of one block: child, ref, caller */
	u8 *buf;			/* the caller's bytes of one page */
	struct det_todo *head, *tail;
};

static int det_todo_add(struct det_merger *m, unsigned long entry)
{
	struct det_todo *t = m->tail;

	if (!t || t->n == ARRAY_SIZE(t->item)) {
		t = kmalloc(sizeof(*t), GFP_KERNEL_ACCOUNT);
		if (!t)
			return -ENOMEM;
		t->next = NULL;
		t->n = 0;
		if (m->tail)
			m->tail->next = t;
		else
			m->head = t;
		m->tail = t;
	}
	t->item[t->n++] = (struct det_item){ .addr = entry };
	return 0;
}

#define det_for_each_item(m, t, it)					\
	for ((t) = (m)->head; (t); (t) = (t)->next)			\
		for ((it) = (t)->item; (it) < (t)->item + (t)->n; (it)++)

/* One page of @mm at @addr, with a reference; the zero page if unmapped. */
static struct page *det_get_page(struct mm_struct *mm, unsigned long addr)
{
	struct page *page;
	long got = det_gup(mm, addr, 1, FOLL_FORCE, &page);

	if (got == 1)
		return page;
	if (got == -EINTR)
		return ERR_PTR(-EINTR);
	page = ZERO_PAGE(0);
	get_page(page);
	return page;
}

/* The child's and the reference's page at @addr, with references. */
static int det_get_pages(struct det_merger *m, unsigned long addr,
			 struct page **cpage, struct page **rpage)
{
	*cpage = det_get_page(m->child, addr);
	if (IS_ERR(*cpage))
		return PTR_ERR(*cpage);
	*rpage = det_get_page(m->ref, addr);
	if (IS_ERR(*rpage)) {
		put_page(*cpage);
		return PTR_ERR(*rpage);
	}
	return 0;
}

/* The part of page @page_addr inside the merge range: [*lo, *hi). */
static void det_clip(struct det_merger *m, unsigned long page_addr,
		     unsigned long *lo, unsigned long *hi)
{
	*lo = max(page_addr, m->start) - page_addr;
	*hi = min(page_addr + PAGE_SIZE, m->end) - page_addr;
}

/*
 * A page both sides may have changed: count its conflicts into the report
 * and return which sides' bytes differ from the reference (DET_CH_*).
 */
static int det_merge_bytes(struct det_merger *m, unsigned long addr)
{
	unsigned long lo, hi, i, n = 0, first = 0;
	struct page *cpage, *rpage;
	const u8 *c, *r;
	u8 *p = m->buf;
	int ret;

	det_clip(m, addr, &lo, &hi);
	if (copy_from_user(p + lo, (void __user *)(addr + lo), hi - lo))
		return -EFAULT;
	ret = det_get_pages(m, addr, &cpage, &rpage);
	if (ret)
		return ret;
	c = kmap_local_page(cpage);
	r = kmap_local_page(rpage);
	for (i = lo; i < hi; i++) {
		/* Skip equal 8-byte words quickly. */
		if (!(i & 7) && i + 8 <= hi &&
		    *(const u64 *)(c + i) == *(const u64 *)(r + i)) {
			i += 7;
			continue;
		}
		if (c[i] != r[i] && p[i] != r[i] && p[i] != c[i] && !n++)
			first = i;
	}
	ret = memcmp(c + lo, r + lo, hi - lo) ? DET_CH_CHILD : 0;
	if (memcmp(p + lo, r + lo, hi - lo))
		ret |= DET_CH_CALLER;
	kunmap_local(r);
	kunmap_local(c);
	put_page(rpage);
	put_page(cpage);

	if (n) {
		if (!m->rep.conflict_bytes) {
			m->rep.conflict_addr = addr + first;
			m->rep.conflict_start = addr;
		}
		m->rep.conflict_bytes += n;
		m->rep.conflict_pages++;
		m->rep.conflict_end = addr + PAGE_SIZE;
	}
	return ret;
}

/*
 * A page the caller did not change (it still maps the reference's page):
 * DET_CH_CHILD if the child's bytes differ from the reference's, else 0.
 * Page identities say where to look, contents decide: a page the child
 * rewrote with the same bytes, or a range khugepaged collapsed, is no
 * change, so the report is a function of the data alone.
 */
static int det_child_changed(struct det_merger *m, unsigned long addr)
{
	struct page *cpage, *rpage;
	unsigned long lo, hi;
	const u8 *c, *r;
	int ret;

	det_clip(m, addr, &lo, &hi);
	ret = det_get_pages(m, addr, &cpage, &rpage);
	if (ret)
		return ret;
	c = kmap_local_page(cpage);
	r = kmap_local_page(rpage);
	ret = memcmp(c + lo, r + lo, hi - lo) ? DET_CH_CHILD : 0;
	kunmap_local(r);
	kunmap_local(c);
	put_page(rpage);
	put_page(cpage);
	return ret;
}

/*
 * Classify the pages of the block at @addr (up to @next) and queue those
 * the child changed.  Two-sided pages are compared for conflicts now.
 */
static int det_merge_block(struct det_merger *m, unsigned long addr,
			   unsigned long *pnext)
{
	struct vm_area_struct *vma = NULL;
	unsigned long a, i, base = addr & PMD_MASK, next = *pnext;
	unsigned long cempty, rempty;
	bool any = false;
	int ret;

	mmap_read_lock(m->child);
	down_read_nested(&m->ref->mmap_lock, SINGLE_DEPTH_NESTING);
	cempty = det_block_pfns(m->child, base, m->cp);
	rempty = det_block_pfns(m->ref, base, m->rp);
	up_read(&m->ref->mmap_lock);
	if (cempty && rempty) {
		/* Neither has any page table here: skip the whole stretch. */
		next = min3(cempty, rempty, m->end);
		m->rep.scanned_pages += (PAGE_ALIGN(next) - addr) >> PAGE_SHIFT;
		*pnext = PAGE_ALIGN(next);
		mmap_read_unlock(m->child);
		return 0;
	}
	for (a = addr; a < next; a += PAGE_SIZE) {
		i = (a - base) >> PAGE_SHIFT;
		m->rep.scanned_pages++;
		/*
		 * From here on cp[i] holds the page's DET_M_* class, 0: none.
		 * Unchanged: the same page as the reference, or a page-cache
		 * page the child only read or ran (the reference may have no
		 * entry for it at all: dup_mm() leaves untouched file-backed
		 * ranges to fault in again).
		 */
		if ((m->cp[i] == m->rp[i] && m->cp[i] != DET_PFN_UNKNOWN) ||
		    det_pfn_unwritten(m->cp[i])) {
			m->cp[i] = 0;
			continue;
		}
		if (!vma || a < vma->vm_start || a >= vma->vm_end)
			vma = vma_lookup(m->child, a);
		/*
		 * Holes, special mappings (the vDSO a master's copy still
		 * had) and shared memory (already common) are not merged.
		 */
		if (!vma || (vma->vm_flags & (VM_SPECIAL | VM_SHARED))) {
			m->cp[i] = 0;
			continue;
		}
		m->cp[i] = DET_M_CHILD;
		any = true;
	}
	mmap_read_unlock(m->child);
	if (!any)
		return 0;

	mmap_read_lock(current->mm);
	det_block_pfns(current->mm, base, m->pp);
	mmap_read_unlock(current->mm);
	for (a = addr; a < next; a += PAGE_SIZE) {
		i = (a - base) >> PAGE_SHIFT;
		if (!m->cp[i])
			continue;
		/*
		 * Where the caller no longer maps the reference's page, it
		 * may have changed it too: compare all three.
		 */
		if (m->pp[i] != m->rp[i] || m->pp[i] == DET_PFN_UNKNOWN)
			ret = det_merge_bytes(m, a);
		else
			ret = det_child_changed(m, a);
		if (ret < 0)
			return ret;
		if (!(ret & DET_CH_CHILD)) {
			m->cp[i] = 0;
		} else if (ret & DET_CH_CALLER) {
			m->cp[i] = DET_M_BOTH;
			m->rep.compared_pages++;
		} else {
			m->rep.copied_pages++;
		}
	}

	/*
	 * The caller must still be able to take the bytes: a page it no
	 * longer maps, or maps read-only, fails the merge now, before
	 * anything is written.
	 */
	ret = 0;
	vma = NULL;
	mmap_read_lock(current->mm);
	for (a = addr; a < next && !ret; a += PAGE_SIZE) {
		if (!m->cp[(a - base) >> PAGE_SHIFT])
			continue;
		if (!vma || a < vma->vm_start || a >= vma->vm_end)
			vma = vma_lookup(current->mm, a);
		if (!vma || !(vma->vm_flags & VM_WRITE))
			ret = -EFAULT;
	}
	mmap_read_unlock(current->mm);
	for (a = addr; a < next && !ret; a += PAGE_SIZE) {
		i = (a - base) >> PAGE_SHIFT;
		if (m->cp[i])
			ret = det_todo_add(m, a | m->cp[i]);
	}
	return ret;
}

/*
 * May the caller's page in @vma be replaced by a new private anonymous
 * page, as a copy-on-write fault would?  Not in shared, special or hugetlb
 * mappings, nor where userfaultfd watches: there the merge writes through
 * the caller's own page, pinned in pass 1.
 */
static bool det_installable(struct vm_area_struct *vma)
{
	return !(vma->vm_flags & (VM_SHARED | VM_SPECIAL | VM_HUGETLB)) &&
	       !userfaultfd_armed(vma);
}

/* A new page charged to the caller, for one page's merged contents. */
static struct folio *det_new_folio(void)
{
	struct folio *folio = folio_alloc(GFP_HIGHUSER_MOVABLE, 0);

	if (folio && mem_cgroup_charge(folio, current->mm, GFP_KERNEL)) {
		folio_put(folio);
		folio = NULL;
	}
	return folio;
}

/*
 * Pass 1: the final contents of a run of @nr pages at consecutive
 * addresses that only the child changed and the range covers whole:
 * copies of the child's pages.
 */
static int det_fill_whole(struct det_merger *m, struct det_item **run,
			  unsigned long nr)
{
	struct page *pages[DET_GUP_BATCH];
	unsigned long i;
	int ret = 0;
	long got;

	got = det_gup(m->child, run[0]->addr & PAGE_MASK, nr, FOLL_FORCE,
		      pages);
	if (got < 0)
		return got;
	for (i = 0; i < got; i++) {
		struct folio *folio = ret ? NULL : det_new_folio();

		if (folio) {
			copy_highpage(folio_page(folio, 0), pages[i]);
			__folio_mark_uptodate(folio);
			run[i]->folio = folio;
		} else {
			ret = -ENOMEM;
		}
		put_page(pages[i]);
	}
	return ret ?: (got == nr ? 0 : -EFAULT);
}

/*
 * Pass 1: the final contents of any other queued page (an edge of the
 * range, or a page both sides changed): the caller's page with the bytes
 * the child changed inside the range.
 */
static int det_fill_page(struct det_merger *m, struct det_item *it)
{
	unsigned long a = it->addr & PAGE_MASK, lo, hi, i;
	struct page *cpage, *rpage;
	const u8 *c, *r;
	u8 *p;
	int ret;

	it->folio = det_new_folio();
	if (!it->folio)
		return -ENOMEM;
	p = kmap_local_folio(it->folio, 0);
	if (copy_from_user(p, (void __user *)a, PAGE_SIZE)) {
		kunmap_local(p);
		return -EFAULT;
	}
	ret = det_get_pages(m, a, &cpage, &rpage);
	if (!ret) {
		det_clip(m, a, &lo, &hi);
		c = kmap_local_page(cpage);
		r = kmap_local_page(rpage);
		for (i = lo; i < hi; i++)
			if (c[i] != r[i])
				p[i] = c[i];
		kunmap_local(r);
		kunmap_local(c);
		put_page(rpage);
		put_page(cpage);
	}
	kunmap_local(p);
	__folio_mark_uptodate(it->folio);
	return ret;
}

/*
 * Pass 1, after classification, without the caller's mmap lock (reading
 * the caller's pages may fault): prepare every queued page's final
 * contents in a new page.  Everything that can fail - memory, the child's
 * pages, the caller's bytes - fails here, before anything is written.
 */
static int det_merge_fill(struct det_merger *m)
{
	struct det_item *run[DET_GUP_BATCH], *it;
	unsigned long nr = 0, lo, hi;
	struct det_todo *t;
	int ret;

	det_for_each_item(m, t, it) {
		unsigned long a = it->addr & PAGE_MASK;
		bool whole;

		if (fatal_signal_pending(current))
			return -EINTR;
		det_clip(m, a, &lo, &hi);
		whole = (it->addr & DET_M_CHILD) && !lo && hi == PAGE_SIZE;
		if (nr && (!whole || nr == DET_GUP_BATCH ||
			   a != (run[nr - 1]->addr & PAGE_MASK) + PAGE_SIZE)) {
			ret = det_fill_whole(m, run, nr);
			if (ret)
				return ret;
			nr = 0;
			cond_resched();
		}
		if (whole) {
			run[nr++] = it;
			continue;
		}
		ret = det_fill_page(m, it);
		if (ret)
			return ret;
	}
	return nr ? det_fill_whole(m, run, nr) : 0;
}

/*
 * Give the caller's @addr in @vma a page table of its own (not a huge
 * page), so that pass 2 installs a page there without allocating or
 * splitting anything.  Caller holds the mmap lock, which keeps the table
 * until pass 2: only munmap() and khugepaged's collapse, both under the
 * write lock, free or replace a page table of anonymous memory.
 */
static int det_prepare_pte(struct vm_area_struct *vma, unsigned long addr)
{
	struct mm_struct *mm = vma->vm_mm;
	pmd_t *pmdp, pmd;
	p4d_t *p4d;
	pud_t *pud;
	int tries;

	mmap_assert_locked(mm);
	p4d = p4d_alloc(mm, pgd_offset(mm, addr), addr);
	if (!p4d)
		return -ENOMEM;
	pud = pud_alloc(mm, p4d, addr);
	if (!pud)
		return -ENOMEM;
	if (pud_leaf(READ_ONCE(*pud)))
		return -EFAULT;
	pmdp = pmd_alloc(mm, pud, addr);
	if (!pmdp)
		return -ENOMEM;
	for (tries = 0; tries < 8; tries++) {
		pmd = pmdp_get_lockless(pmdp);
		if (pmd_none(pmd)) {
			if (__pte_alloc(mm, pmdp))
				return -ENOMEM;
		} else if (is_pmd_migration_entry(pmd)) {
			pmd_migration_entry_wait(mm, pmdp);
		} else if (pmd_leaf(pmd)) {
			split_huge_pmd(vma, pmdp, addr);
		} else if (!pmd_present(pmd) || pmd_bad(pmd)) {
			return -EFAULT;
		} else {
			return 0;
		}
	}
	return -EFAULT;
}

/*
 * Pass 1, last step, under the caller's mmap lock (held on through pass
 * 2): every page the merge writes is still mapped writable, and either has
 * a page table ready for its new page or, where the mapping cannot take a
 * new page, is pinned writable.  Pass 2 then needs nothing that can fail.
 */
static int det_merge_ready(struct det_merger *m)
{
	struct mm_struct *mm = current->mm;
	struct vm_area_struct *vma = NULL;
	struct det_todo *t;
	struct det_item *it;
	int ret;

	mmap_assert_locked(mm);
	det_for_each_item(m, t, it) {
		unsigned long a = it->addr & PAGE_MASK;

		if (!vma || a < vma->vm_start || a >= vma->vm_end)
			vma = vma_lookup(mm, a);
		if (!vma || !(vma->vm_flags & VM_WRITE))
			return -EFAULT;
		if (det_installable(vma)) {
			ret = anon_vma_prepare(vma);
			if (!ret)
				ret = det_prepare_pte(vma, a);
		} else {
			struct page *page;

			ret = pin_user_pages_remote(mm, a, 1, FOLL_WRITE, &page,
						    NULL) == 1 ? 0 : -EFAULT;
			if (!ret)
				it->pinned = page;
		}
		if (ret)
			return ret;
		cond_resched();
	}
	return 0;
}

/*
 * Pass 2: replace the caller's page at @addr (in @vma, an installable
 * mapping) with @folio, as a copy-on-write fault would.  Cannot fail: the
 * page table exists (det_prepare_pte(), mmap lock held since); an old
 * page is released whatever it is (present, swapped out, a marker), and
 * a migration in flight is waited for.
 */
static void det_install_folio(struct vm_area_struct *vma, unsigned long addr,
			      struct folio *folio)
{
	struct mm_struct *mm = vma->vm_mm;
	struct folio *old_folio = NULL;
	struct mmu_notifier_range range;
	struct page *old_page = NULL;
	pte_t *pte = NULL, old, entry;
	unsigned long empty;
	spinlock_t *ptl;
	pmd_t *pmdp;

	mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, addr,
				addr + PAGE_SIZE);
	mmu_notifier_invalidate_range_start(&range);
retry:
	pmdp = det_find_pmd(mm, addr, &empty);
	if (pmdp)
		pte = pte_offset_map_lock(mm, pmdp, addr, &ptl);
	/* det_prepare_pte() made the table; the mmap lock kept it. */
	if (WARN_ON_ONCE(!pte)) {
		mmu_notifier_invalidate_range_end(&range);
		folio_put(folio);
		return;
	}
	old = ptep_get(pte);
	if (pte_present(old)) {
		old_page = vm_normal_page(vma, addr, old);
		if (old_page)
			old_folio = page_folio(old_page);
		flush_cache_page(vma, addr, pte_pfn(old));
		ptep_clear_flush(vma, addr, pte);
	} else if (!pte_none(old)) {
		swp_entry_t ent = pte_to_swp_entry(old);

		if (is_migration_entry(ent)) {
			pte_unmap_unlock(pte, ptl);
			pte = NULL;
			migration_entry_wait(mm, pmdp, addr);
			goto retry;
		}
		/* Device memory is not configured with CONFIG_DET. */
		WARN_ON_ONCE(is_device_private_entry(ent) ||
			     is_device_exclusive_entry(ent));
		if (!non_swap_entry(ent)) {
			free_swap_and_cache(ent);
			dec_mm_counter(mm, MM_SWAPENTS);
		}
		pte_clear(mm, addr, pte);
	}
	if (!old_folio) {
		inc_mm_counter(mm, MM_ANONPAGES);
	} else if (!folio_test_anon(old_folio)) {
		dec_mm_counter(mm, mm_counter_file(old_folio));
		inc_mm_counter(mm, MM_ANONPAGES);
	}
	entry = mk_pte(&folio->page, vma->vm_page_prot);
	entry = pte_sw_mkyoung(entry);
	entry = maybe_mkwrite(pte_mkdirty(entry), vma);
	folio_add_new_anon_rmap(folio, vma, addr, RMAP_EXCLUSIVE);
	folio_add_lru_vma(folio, vma);
	set_pte_at(mm, addr, pte, entry);
	update_mmu_cache(vma, addr, pte);
	if (old_folio)
		folio_remove_rmap_pte(old_folio, old_page, vma);
	pte_unmap_unlock(pte, ptl);
	mmu_notifier_invalidate_range_end(&range);
	if (old_folio)
		folio_put(old_folio);	/* the old mapping's reference */
}

/*
 * Pass 2, under the caller's mmap lock taken for det_merge_ready(): write
 * every prepared page.  Nothing here can fail, so a merge that got this
 * far is applied whole.
 */
static void det_merge_commit(struct det_merger *m)
{
	struct vm_area_struct *vma = NULL;
	unsigned long lo, hi;
	struct det_todo *t;
	struct det_item *it;

	mmap_assert_locked(current->mm);
	det_for_each_item(m, t, it) {
		unsigned long a = it->addr & PAGE_MASK;

		if (it->pinned) {
			det_clip(m, a, &lo, &hi);
			memcpy_page(it->pinned, lo, folio_page(it->folio, 0), lo,
				    hi - lo);
			unpin_user_pages_dirty_lock(&it->pinned, 1, true);
			it->pinned = NULL;
			continue;
		}
		if (!vma || a < vma->vm_start || a >= vma->vm_end)
			vma = vma_lookup(current->mm, a);
		det_install_folio(vma, a, it->folio);
		it->folio = NULL;
		cond_resched();
	}
}

/* DET_MERGE of [start, start+size) into the caller; report to @report. */
int det_merge(struct det_proc *d, unsigned long start, unsigned long size,
	      unsigned long report)
{
	struct det_merger m = { .start = start, .end = start + size };
	unsigned long addr, next;
	struct det_todo *t;
	int ret = 0;

	BUILD_BUG_ON(sizeof(struct det_merge) != DET_MERGE_SIZE);
	ret = det_mm_get(d, &m.child, &m.ref);
	if (ret)
		return ret;
	m.cp = kmalloc_array(3 * PTRS_PER_PTE, sizeof(unsigned long),
			     GFP_KERNEL);
	m.buf = kmalloc(PAGE_SIZE, GFP_KERNEL);
	if (!m.cp || !m.buf) {
		ret = -ENOMEM;
		goto out;
	}
	m.rp = m.cp + PTRS_PER_PTE;
	m.pp = m.rp + PTRS_PER_PTE;

	for (addr = start & PAGE_MASK; size && addr < m.end; addr = next) {
		next = min((addr & PMD_MASK) + PMD_SIZE, m.end);
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			goto out;
		}
		if (det_killed(d)) {
			ret = -ECHILD;
			goto out;
		}
		ret = det_merge_block(&m, addr, &next);
		if (ret)
			goto out;
		cond_resched();
	}
	/*
	 * The report is final after pass 1.  Written now, a bad report
	 * pointer fails the merge before anything is merged.
	 */
	if (report && copy_to_user((void __user *)report, &m.rep,
				   sizeof(m.rep))) {
		ret = -EFAULT;
		goto out;
	}
	if (m.rep.conflict_bytes) {
		ret = -DET_E_CONFLICT;
		goto out;
	}
	ret = det_merge_fill(&m);
	if (ret || !m.head)
		goto out;
	ret = mmap_read_lock_killable(current->mm);
	if (ret)
		goto out;
	ret = det_merge_ready(&m);
	if (!ret)
		det_merge_commit(&m);	/* cannot fail */
	mmap_read_unlock(current->mm);
	/*
	 * A report inside the merged range may just have been replaced by
	 * the child's bytes: write it again.  Its page is present and
	 * writable now, so this does not fail.
	 */
	if (!ret && report && report < PAGE_ALIGN(m.end) &&
	    report + sizeof(m.rep) > (start & PAGE_MASK) &&
	    copy_to_user((void __user *)report, &m.rep, sizeof(m.rep)))
		ret = -EFAULT;
out:
	while ((t = m.head)) {
		struct det_item *it;

		m.head = t->next;
		for (it = t->item; it < t->item + t->n; it++) {
			if (it->pinned)
				unpin_user_page(it->pinned);
			if (it->folio)
				folio_put(it->folio);
		}
		kfree(t);
	}
	kfree(m.buf);
	kfree(m.cp);
	mmput(m.ref);
	mmput(m.child);
	return ret;
}
