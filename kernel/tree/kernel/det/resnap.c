// SPDX-License-Identifier: GPL-2.0-only
/*
 * Deterministic process groups: DET_SNAP of a child that already holds an
 * earlier snapshot of the caller, brought up to date in place.
 *
 * A child that ran, stopped and was merged differs from its caller only
 * where one of them wrote since its snapshot: the child's writes are its
 * own pages, the caller's are pages of its own, and everything else is
 * still the same page, mapped in both.  Rather than copy the caller's
 * whole address space again and tear the child's down (dup_mm(), as
 * fork() does, costs a page-table entry copy for every populated page and
 * as much again to free it), det_resnap() walks both page tables side by
 * side and changes only the entries that differ: the child's own page is
 * unmapped, and the caller's page is shared with it copy-on-write, as
 * fork() shares it; or, where the caller wrote its page since it last
 * shared it and the child's is the child's alone, the caller's bytes are
 * copied into the child's page, so that the caller's next write to it is
 * no fault (det_resnap_copy()).  Then the child's write log starts again
 * from empty.
 * The result is what a new copy would be: every address reads as the
 * caller's does, read-only wherever it is anonymous memory.
 *
 * A huge page the same in both is left alone, one the caller has where
 * the child has nothing is shared whole, as fork() shares it, and any
 * other huge mapping is split, on either side, and taken page by page.
 *
 * Only where that holds page for page: both address spaces have the same
 * mappings (same bounds, flags, offset and file; the child's linked to
 * every anon_vma of the caller's, so that rmap finds the caller's pages in
 * it), nothing is swapped or migrating, and no page may be pinned.
 * A deterministic caller's children meet that; a master's do not (their
 * file mappings became their own, their clock pages were dropped).
 * Anything else is -EAGAIN, and DET_SNAP makes a new copy instead.
 */

#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/pagevec.h>
#include <linux/pgtable.h>
#include <linux/rmap.h>
#include <linux/sched/mm.h>
#include <linux/userfaultfd_k.h>
#include <linux/xarray.h>
#include <asm/tlbflush.h>

#include "internal.h"

/* DET_SNAPs made in place, for tests (debugfs det/resnaps). */
atomic_t det_resnaps = ATOMIC_INIT(0);

struct det_resnap {
	struct mm_struct *mm, *cmm;
	struct vm_area_struct *vma, *cvma;
	/* The child's unmapped pages, freed after its TLB flush. */
	struct folio_batch gone;
	int rss[NR_MM_COUNTERS];
	bool wrprotected;	/* some caller entry lost its write bit */
	bool touched;		/* the child's page table changed */
};

/* Mappings that a page-by-page copy would not reproduce. */
#define DET_RESNAP_NOT	(VM_SHARED | VM_MAYSHARE | VM_SPECIAL | VM_HUGETLB | \
			 VM_DONTCOPY | VM_WIPEONFORK)

/* Is the child's @cvma what dup_mm() would make of the caller's @vma? */
static bool det_vma_same(struct vm_area_struct *vma,
			 struct vm_area_struct *cvma)
{
	struct anon_vma_chain *avc;

	if (vma->vm_start != cvma->vm_start || vma->vm_end != cvma->vm_end ||
	    vma->vm_pgoff != cvma->vm_pgoff || vma->vm_file != cvma->vm_file ||
	    (vma->vm_flags & ~VM_LOCKED_MASK) != cvma->vm_flags ||
	    (vma->vm_flags & DET_RESNAP_NOT) ||
	    userfaultfd_armed(vma) || userfaultfd_armed(cvma) ||
	    anon_vma_name(vma) != anon_vma_name(cvma))
		return false;
#ifdef CONFIG_NUMA
	if (!mpol_equal(vma_policy(vma), vma_policy(cvma)))
		return false;
#endif
	list_for_each_entry(avc, &vma->anon_vma_chain, same_vma)
		if (!det_vma_linked(cvma, avc->anon_vma))
			return false;
	return true;
}

static bool det_same_layout(struct mm_struct *mm, struct mm_struct *cmm)
{
	VMA_ITERATOR(vmi, mm, 0);
	VMA_ITERATOR(cvmi, cmm, 0);
	struct vm_area_struct *vma, *cvma;

	if (rcu_access_pointer(mm->exe_file) !=
	    rcu_access_pointer(cmm->exe_file))
		return false;
	for_each_vma(vmi, vma) {
		cvma = vma_next(&cvmi);
		if (!cvma || !det_vma_same(vma, cvma))
			return false;
	}
	return !vma_next(&cvmi);
}

/*
 * The child's unmapped pages go at once, without a TLB flush, which
 * would cost an interrupt per snapshot: the child alone could reach them
 * through its TLB, and it flushes that when it wakes, before it runs
 * anything that could (det_tlb_stale(), det_park()).
 */
static void det_resnap_free(struct det_resnap *r)
{
	if (folio_batch_count(&r->gone))
		folios_put(&r->gone);
}

/*
 * The caller's entry @pe maps a page it wrote since it last shared it
 * (writable: an anonymous page of its own), and the child's @ce one of
 * the child's own, which nothing else holds.  Rather than share the
 * caller's page, which makes the caller's next write to it a fault and a
 * copy, copy its bytes into the child's page and write-protect that: a
 * caller that writes the page again each round (its stack, its runtime's
 * state, data it rewrites) keeps it writable, and the child's first write
 * is logged as any other (do_wp_page() copies a logged original).
 * Caller holds both page-table locks.  Returns whether it copied.
 */
static bool det_resnap_copy(struct det_resnap *r, unsigned long addr,
			    pte_t *dst, pte_t pe, pte_t ce, struct page *page)
{
	struct page *cpage;
	struct folio *cfolio;

	if (!pte_write(pe) || !pte_present(ce) || !page || !PageAnon(page) ||
	    !PageAnonExclusive(page))
		return false;
	cpage = vm_normal_page(r->cvma, addr, ce);
	if (!cpage)
		return false;
	cfolio = page_folio(cpage);
	/*
	 * Mapped here alone, no other reference (pin, log, swap cache): a
	 * page the caller shared and has since copied away counts too.
	 */
	if (!det_folio_plain_anon(cfolio) || folio_ref_count(cfolio) != 1 ||
	    folio_mapcount(cfolio) != 1)
		return false;
	copy_highpage(cpage, page);
	if (pte_write(ce))
		ptep_set_wrprotect(r->cmm, addr, dst);
	/*
	 * It now holds the snapshot's bytes, unlogged: no longer exclusive,
	 * as a shared page would be, so that nothing makes it writable
	 * without the logged write fault (wlog.c's invariant).
	 */
	ClearPageAnonExclusive(cpage);
	r->touched = true;
	return true;
}

/*
 * Make the child's entries in [@addr, @end), all in one page table, what
 * the caller's are; a NULL @pmdp: the caller has no page table there, and
 * the child's entries go.  Returns the address it got to (@end, or short
 * of it once the batch of pages to free is full), or a negative error.
 */
static long det_resnap_ptes(struct det_resnap *r, pmd_t *pmdp, pmd_t *cpmdp,
			    unsigned long addr, unsigned long end)
{
	struct vm_area_struct *vma = r->vma, *cvma = r->cvma;
	pte_t *src = NULL, *dst, *src0 = NULL, *dst0, pe = __pte(0), ce;
	spinlock_t *ptl, *cptl;
	struct folio *folio;
	struct page *page;
	long ret = 0;

	dst0 = dst = pmdp ? pte_alloc_map_lock(r->cmm, cpmdp, addr, &cptl) :
			    pte_offset_map_lock(r->cmm, cpmdp, addr, &cptl);
	if (!dst)
		return pmdp ? -ENOMEM : end;	/* no table: nothing to clear */
	if (pmdp) {
		src0 = src = pte_offset_map_nolock(r->mm, pmdp, addr, &ptl);
		if (!src) {
			pte_unmap_unlock(dst, cptl);
			return -EAGAIN;
		}
		spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
	}
	for (; addr < end; addr += PAGE_SIZE, dst++) {
		if (src)
			pe = ptep_get(src++);
		ce = ptep_get(dst);
		if (pte_none(pe) && pte_none(ce))
			continue;
		/* The same page, read-only in both: nobody wrote it. */
		if (pte_present(pe) && pte_present(ce) &&
		    pte_pfn(pe) == pte_pfn(ce) && !pte_write(pe) &&
		    !pte_write(ce))
			continue;
		if ((!pte_none(pe) && !pte_present(pe)) ||
		    (!pte_none(ce) && !pte_present(ce))) {
			ret = -EAGAIN;	/* swap, migration, markers */
			break;
		}
		page = pte_present(pe) ? vm_normal_page(vma, addr, pe) : NULL;
		folio = page ? page_folio(page) : NULL;
		if (det_resnap_copy(r, addr, dst, pe, ce, page))
			continue;
		if (pte_present(ce)) {
			struct page *cpage = vm_normal_page(cvma, addr, ce);
			struct folio *cfolio;

			if (cpage && !folio_batch_space(&r->gone))
				break;	/* free the batch, then go on */
			ptep_get_and_clear(r->cmm, addr, dst);
			r->touched = true;
			if (cpage) {
				cfolio = page_folio(cpage);
				folio_remove_rmap_pte(cfolio, cpage, cvma);
				r->rss[mm_counter(cfolio)]--;
				/* The mapping's reference, put after a flush. */
				folio_batch_add(&r->gone, cfolio);
			}
		}
		if (!pte_present(pe))
			continue;
		/* Maybe pinned: fork() would copy it now. */
		if (folio && folio_test_anon(folio) &&
		    folio_try_dup_anon_rmap_pte(folio, page, vma)) {
			ret = -EAGAIN;
			break;
		}
		if (folio) {
			folio_get(folio);
			if (!folio_test_anon(folio))
				folio_dup_file_rmap_pte(folio, page);
			r->rss[mm_counter(folio)]++;
		}
		if (pte_write(pe)) {
			ptep_set_wrprotect(r->mm, addr, src - 1);
			pe = pte_wrprotect(pe);
			r->wrprotected = true;
		}
		set_pte_at(r->cmm, addr, dst, pte_clear_uffd_wp(pte_mkold(pe)));
		r->touched = true;
	}
	if (src0) {
		spin_unlock(ptl);
		pte_unmap(src0);
	}
	pte_unmap_unlock(dst0, cptl);
	return ret ?: addr;
}

static void det_resnap_rss(struct det_resnap *r)
{
	int i;

	for (i = 0; i < NR_MM_COUNTERS; i++) {
		if (r->rss[i])
			add_mm_counter(r->cmm, i, r->rss[i]);
		r->rss[i] = 0;
	}
}

/* The child's PMD entry for @addr, with the tables above it made. */
static pmd_t *det_child_pmd(struct mm_struct *cmm, unsigned long addr)
{
	p4d_t *p4d = p4d_alloc(cmm, pgd_offset(cmm, addr), addr);
	pud_t *pud = p4d ? pud_alloc(cmm, p4d, addr) : NULL;

	return pud ? pmd_alloc(cmm, pud, addr) : NULL;
}

/* A migrating, device or bad PMD entry, which this walk does not take. */
static bool det_pmd_odd(pmd_t pmd)
{
	return !pmd_none(pmd) && (!pmd_present(pmd) || pmd_devmap(pmd) ||
				  (!pmd_trans_huge(pmd) && pmd_bad(pmd)));
}

/*
 * The caller's PMD entry @pmdp (@pmd, read) and the child's @cpmdp
 * (@cpmd) at @addr, one of them a huge page.  The same huge page,
 * read-only in both, is up to date; a caller's huge page where the child
 * has no entry is shared with it as fork() shares it (copy_huge_pmd()).
 * Anything else is split into a page table, for det_resnap_ptes() to
 * take page by page.  Returns 1 when the entry is done, 0 when its page
 * tables are to be walked, or -ENOMEM.
 */
static int det_resnap_huge(struct det_resnap *r, pmd_t *pmdp, pmd_t pmd,
			   pmd_t *cpmdp, pmd_t cpmd, unsigned long addr)
{
	int ret;

	if (pmd_trans_huge(pmd) && pmd_trans_huge(cpmd) &&
	    pmd_pfn(pmd) == pmd_pfn(cpmd) && !pmd_write(pmd) &&
	    !pmd_write(cpmd))
		return 1;
	if (pmd_trans_huge(pmd) && pmd_none(cpmd)) {
		r->wrprotected |= pmd_write(pmd);
		ret = copy_huge_pmd(r->cmm, r->mm, cpmdp, pmdp, addr, r->cvma,
				    r->vma);
		if (ret != -EAGAIN) {
			r->touched = true;
			return ret ?: 1;
		}
		/* A pinned page: copy_huge_pmd() split the caller's entry. */
	}
	if (pmd_trans_huge(pmd))
		split_huge_pmd(r->vma, pmdp, addr);
	if (pmd_trans_huge(cpmd)) {
		split_huge_pmd(r->cvma, cpmdp, addr);
		r->touched = true;
	}
	return 0;
}

/*
 * [@addr, @end), inside one PUD entry: the caller's PMD entries from
 * @pmdp on, NULL if it has no PMD table there, and the child's from
 * @cpmdp on, NULL likewise.  An entry empty in both costs one look.
 */
static int det_resnap_pmds(struct det_resnap *r, pmd_t *pmdp, pmd_t *cpmdp,
			   unsigned long addr, unsigned long end)
{
	unsigned long next;
	pmd_t pmd, cpmd;
	long got;

	for (; addr < end; addr = next) {
		next = pmd_addr_end(addr, end);
		pmd = pmdp ? pmdp_get_lockless(pmdp) : __pmd(0);
		cpmd = cpmdp ? pmdp_get_lockless(cpmdp) : __pmd(0);
		if (det_pmd_odd(pmd) || det_pmd_odd(cpmd))
			return -EAGAIN;
		if (pmd_none(pmd) && pmd_none(cpmd))
			goto step;
		if (!pmd_none(pmd) && !cpmdp) {
			/* The child's PMD table, then this entry's. */
			cpmdp = det_child_pmd(r->cmm, addr);
			if (!cpmdp)
				return -ENOMEM;
		}
		if (pmd_trans_huge(pmd) || pmd_trans_huge(cpmd)) {
			got = det_resnap_huge(r, pmdp, pmd, cpmdp, cpmd, addr);
			if (got < 0)
				return got;
			if (got)
				goto step;
			pmd = pmdp ? pmdp_get_lockless(pmdp) : __pmd(0);
			if (det_pmd_odd(pmd) || pmd_trans_huge(pmd) ||
			    det_pmd_odd(pmdp_get_lockless(cpmdp)))
				return -EAGAIN;
		}
		while (addr < next) {
			got = det_resnap_ptes(r, pmd_none(pmd) ? NULL : pmdp,
					      cpmdp, addr, next);
			det_resnap_rss(r);
			det_resnap_free(r);
			if (got < 0)
				return got;
			addr = got;
		}
step:
		if (pmdp)
			pmdp++;
		if (cpmdp)
			cpmdp++;
	}
	return 0;
}

/* One mapping, the caller's r->vma and the child's r->cvma. */
static int det_resnap_vma(struct det_resnap *r)
{
	unsigned long addr = r->vma->vm_start, end = r->vma->vm_end;
	unsigned long next, empty, cempty;
	pmd_t *pmdp, *cpmdp;
	int ret;

	while (addr < end) {
		pmdp = det_find_pmd(r->mm, addr, &empty);
		cpmdp = det_find_pmd(r->cmm, addr, &cempty);
		if ((!pmdp && !empty) || (!cpmdp && !cempty))
			return -EAGAIN;		/* a huge or bad entry */
		/* Nothing in either, up to the nearer of their ends. */
		if (!pmdp && !cpmdp) {
			addr = min3(empty, cempty, end);
			continue;
		}
		next = pud_addr_end(addr, end);
		ret = det_resnap_pmds(r, pmdp, cpmdp, addr, next);
		if (ret)
			return ret;
		addr = next;
		cond_resched();
	}
	return 0;
}

/**
 * det_resnap - bring a stopped child's snapshot of the caller up to date
 * @d:	the child, stopped, with an address space of its own that an
 *	earlier DET_SNAP (or its creation) copied from the caller, logged.
 * @touched: set if the child's address space changed, whatever the result.
 *
 * Return: 0 with the child's address space what a new copy of the
 * caller's would be and its write log empty; -EAGAIN where the two do not
 * correspond page for page (see the top of this file); -ENOMEM; -EINTR if
 * the caller is being killed.  After an error other than -EAGAIN with
 * *@touched false, the child is as it was.
 */
int det_resnap(struct det_proc *d, bool *touched)
{
	struct det_resnap r = { .mm = current->mm };
	struct mmu_notifier_range range, crange;
	struct vm_area_struct *vma;
	int ret;

	*touched = false;
	ret = det_mm_get(d, &r.cmm, NULL);
	if (ret)
		return ret;
	if (!det_wlog_on(r.cmm) || READ_ONCE(d->snap) ||
	    test_bit(MMF_HAS_PINNED, &r.mm->flags)) {
		mmput(r.cmm);
		return -EAGAIN;
	}
	folio_batch_init(&r.gone);
	ret = -EINTR;
	if (mmap_write_lock_killable(r.mm))
		goto out;
	/* The caller's, then the child's, as dup_mmap() and merges take. */
	mmap_write_lock_nested(r.cmm, SINGLE_DEPTH_NESTING);
	ret = -EAGAIN;
	if (!det_same_layout(r.mm, r.cmm))
		goto unlock_both;
	/* As dup_mmap(): fast GUP must not pin what becomes shared. */
	raw_write_seqcount_begin(&r.mm->write_protect_seq);
	ret = 0;
	{
		VMA_ITERATOR(vmi, r.mm, 0);
		VMA_ITERATOR(cvmi, r.cmm, 0);

		for_each_vma(vmi, vma) {
			r.vma = vma;
			r.cvma = vma_next(&cvmi);
			vma_start_write(vma);
			vma_start_write(r.cvma);
			mmu_notifier_range_init(&range,
						MMU_NOTIFY_PROTECTION_PAGE, 0,
						r.mm, vma->vm_start,
						vma->vm_end);
			mmu_notifier_range_init(&crange, MMU_NOTIFY_CLEAR, 0,
						r.cmm, vma->vm_start,
						vma->vm_end);
			mmu_notifier_invalidate_range_start(&range);
			mmu_notifier_invalidate_range_start(&crange);
			ret = det_resnap_vma(&r);
			mmu_notifier_invalidate_range_end(&crange);
			mmu_notifier_invalidate_range_end(&range);
			if (ret)
				break;
		}
	}
	/* The caller writes nothing shared through a stale TLB entry. */
	if (r.wrprotected)
		flush_tlb_mm(r.mm);
	raw_write_seqcount_end(&r.mm->write_protect_seq);
	if (!ret) {
		det_wlog_restart(r.cmm);
		atomic_inc(&det_resnaps);
	}
unlock_both:
	mmap_write_unlock(r.cmm);
	mmap_write_unlock(r.mm);
out:
	if (r.touched)
		det_tlb_stale(d);
	*touched = r.touched;
	mmput(r.cmm);
	return ret;
}
