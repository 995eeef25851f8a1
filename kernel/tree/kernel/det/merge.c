// SPDX-License-Identifier: GPL-2.0-only
/*
 * Deterministic process groups: the merge engine (DET_MERGE).
 *
 * DET_MERGE's cost follows what changed.  Which pages the child may have
 * changed comes from its write log (wlog.c): only the pages it wrote since
 * its snapshot are looked at, each against the log's copy of what the
 * snapshot held.  A child without a log (det_wlog_usable()) has a
 * reference copy instead; then the child's and the reference's page
 * tables are walked one PMD (2 MiB) at a time, and a page both map
 * identically (or that is a page-cache page in the child: a private write
 * always makes an anonymous copy) was never written and is skipped.
 * Either way, for each page the child may have changed:
 *
 *   - the caller still maps the snapshot's page: if the child's bytes
 *     differ from the snapshot's, only the child changed it - taken whole:
 *     the child's page itself replaces the caller's in its page table,
 *     shared copy-on-write as fork() shares a page (no copy, no fault;
 *     det_share_page()), or a fresh copy of it where it cannot be shared;
 *   - otherwise both sides may have changed it: three-way byte compare,
 *     which notes the 64-byte chunks the child changed; the merge later
 *     writes the child's bytes there into the caller's own page, in place.
 *
 * Page identities only say where to look; the report counts what the
 * bytes say, so it is the same however pages happen to be shared.
 *
 * The merge is all or nothing.  A first pass classifies every page,
 * compares the two-sided ones for conflicts without writing anything,
 * keeps the child's own page of each one-sided one, and, if there are no
 * conflicts, prepares everything the writing needs under the caller's
 * mmap lock (det_merge_ready()): the caller's page, taken for writing,
 * where the child's bytes go into it (a two-sided page, or a mapping that
 * cannot take a new page), else a page table for the child's page, and
 * each kept child's page shared or else copied (det_take_child_pages()).
 * Any failure (a conflict, memory, a page the caller cannot take) ends the
 * merge there, with nothing written.  The second pass (det_merge_commit()),
 * still under that lock, only installs pages and writes into taken ones:
 * it cannot fail.
 *
 * Another process may write the caller's memory while it merges (a
 * master is an ordinary process: process_vm_writev(), /proc/pid/mem).
 * Into a page both sides changed, pass 2 writes the child's changed
 * bytes alone (with cmpxchg where a master's word holds others too), so
 * none of its writes to the other bytes is undone; a byte both write
 * meanwhile is a race either may win.  A master's page the caller had not
 * changed when pass 1 looked is replaced whole only if it still maps the
 * snapshot's page then, under the page-table lock; else another process
 * wrote it in between, and the child's changes are written into it
 * instead (det_install_folio()).  No other process can write a
 * deterministic caller's memory.
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


/* Entry @k of the block's index list @idx, or @k itself without one. */
static inline unsigned int det_ix(const u16 *idx, unsigned int k)
{
	return idx ? idx[k] : k;
}

/*
 * The identity of each page @mm maps in the PMD-sized block at @addr (with
 * @idx, only of the @n pages it lists): its pfn, DET_PFN_NONE or
 * DET_PFN_UNKNOWN.  Caller holds @mm's mmap lock.
 * Returns the end of the empty stretch of address space @addr lies in when
 * no page table reaches it at all (the whole PMD, PUD, P4D or PGD entry is
 * empty, and the empty PMD entries after it), so that unpopulated ranges
 * are skipped a table at a time; @pfn is then left as it was (all
 * DET_PFN_NONE is the caller's to fill, if it needs it).  Else 0.
 */
static unsigned long det_block_pfns(struct mm_struct *mm, unsigned long addr,
				    unsigned long *pfn, const u16 *idx,
				    unsigned int n)
{
	unsigned long empty;
	unsigned int i, k;
	pmd_t *pmdp, pmd;
	spinlock_t *ptl;
	pte_t *pte;

	mmap_assert_locked(mm);
	if (!idx)
		n = PTRS_PER_PTE;
	addr &= PMD_MASK;
	pmdp = det_find_pmd(mm, addr, &empty);
	if (!pmdp) {
		if (empty)
			return empty;
		goto unknown;
	}
	pmd = pmdp_get_lockless(pmdp);
	if (pmd_none(pmd)) {
		/* Skip on over the empty entries after it in its table. */
		empty = pud_addr_end(addr, TASK_SIZE_MAX);
		for (addr += PMD_SIZE; addr < empty; addr += PMD_SIZE)
			if (!pmd_none(pmdp_get_lockless(++pmdp)))
				break;
		return min(addr, empty);
	}
	if (!pmd_present(pmd))
		goto unknown;
	for (k = 0; k < n; k++)
		pfn[det_ix(idx, k)] = DET_PFN_NONE;
	if (pmd_leaf(pmd)) {
		/* Under the lock, so that the page stays what it is. */
		ptl = pmd_lock(mm, pmdp);
		pmd = pmdp_get(pmdp);
		if (pmd_present(pmd) && pmd_leaf(pmd) &&
		    !is_huge_zero_pmd(pmd)) {
			unsigned long tag = det_pfn_tag(pmd_pfn(pmd)) &
					    DET_PFN_FILE;

			for (k = 0; k < n; k++) {
				i = det_ix(idx, k);
				pfn[i] = (pmd_pfn(pmd) + i) | tag;
			}
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
	for (k = 0; k < n; k++) {
		pte_t e;

		i = det_ix(idx, k);
		e = ptep_get(pte + i);
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
	for (k = 0; k < n; k++)
		pfn[det_ix(idx, k)] = DET_PFN_UNKNOWN;
	return 0;
}

/* What happens to a page the child changed. */
#define DET_M_CHILD	1UL	/* only the child changed it: take it whole */
#define DET_M_BOTH	2UL	/* both did: byte merge */
#define DET_M_TAKE	4UL	/* with DET_M_CHILD: @folio is the child's page */

/* Which sides' bytes differ from the reference's, by content. */
#define DET_CH_CHILD	1
#define DET_CH_CALLER	2

/*
 * Where a page's final contents come from: the child's page whole
 * (@folio, DET_M_TAKE), or the caller's own page with the child's changes
 * applied in place - the bytes of the 64-byte chunks in @chunks where the
 * child's @cpage differs from the snapshot's @rpage (det_merge_bytes()).
 * Each with a reference.
 */
struct det_src {
	struct folio *folio;
	struct page *cpage, *rpage;
	u64 chunks;
};

/*
 * One page the merge writes into the caller.  Pass 1 queues it (@addr,
 * low bits DET_M_*; [@lo, @hi) of it lies in the range) with its final
 * contents' source @src, and takes the caller's page for writing
 * (@wpage, det_merge_ready()) where pass 2 writes into it: the child's
 * changes, or the child's page where the caller's mapping cannot take a
 * new page.
 * Pass 2 only installs or writes (det_merge_commit()).
 */
struct det_item {
	unsigned long addr;
	struct det_src src;
	struct page *wpage;
	u16 lo, hi;	/* the part of the page inside its range */
	bool shared;	/* src.folio shared with the child (det_share_page()) */
};

/* The pages to write, in address order. */
struct det_todo {
	struct det_todo *next;
	unsigned int n;
	struct det_item item[(PAGE_SIZE - 16) / sizeof(struct det_item)];
};

struct det_merger {
	struct mm_struct *child, *ref;
	unsigned long start, end;	/* the range being classified */
	struct det_merge rep;
	unsigned long *cp, *rp, *pp;	/* pfns of one block: child, ref, caller */
	struct det_src *src;		/* one block's pages prepared early */
	struct page **cpg;		/* one block's child pages, looked up */
	u16 *idx;			/* the block's pages the child changed, */
	unsigned int nidx;		/* in address order: only those are set */
	struct det_todo *head, *tail;
	bool stale;			/* the child's TLB may map a page writable */
};

/* The part of page @page_addr inside the merge range: [*lo, *hi). */
static void det_clip(struct det_merger *m, unsigned long page_addr,
		     unsigned long *lo, unsigned long *hi)
{
	*lo = max(page_addr, m->start) - page_addr;
	*hi = min(page_addr + PAGE_SIZE, m->end) - page_addr;
}

static int det_todo_add(struct det_merger *m, unsigned long entry,
			const struct det_src *src)
{
	struct det_todo *t = m->tail;
	unsigned long lo, hi;

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
	det_clip(m, entry & PAGE_MASK, &lo, &hi);
	t->item[t->n++] = (struct det_item){ .addr = entry, .src = *src,
					     .lo = lo, .hi = hi };
	return 0;
}

/* The queued item after @it, moving *@t on to the next chunk if need be. */
static struct det_item *det_next_item(struct det_todo **t,
				      struct det_item *it)
{
	if (++it < (*t)->item + (*t)->n)
		return it;
	*t = (*t)->next;
	return *t ? (*t)->item : NULL;	/* a chunk is never empty */
}

#define det_for_each_item(m, t, it)					\
	for ((t) = (m)->head, (it) = (t) ? (t)->item : NULL; (it);	\
	     (it) = det_next_item(&(t), (it)))

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

/*
 * The snapshot's page at @addr, with a reference: the reference's, or the
 * write log's, whose pfn det_merge_logged() put in m->rp[] (the zero page
 * where the snapshot held zeros).
 */
static struct page *det_ref_page(struct det_merger *m, unsigned long addr)
{
	unsigned long pfn;
	struct page *rpage;

	if (m->ref)
		return det_get_page(m->ref, addr);
	pfn = m->rp[(addr & ~PMD_MASK) >> PAGE_SHIFT];
	rpage = pfn == DET_PFN_NONE ? ZERO_PAGE(0) :
				      pfn_to_page(pfn & ~DET_PFN_FILE);
	get_page(rpage);
	return rpage;
}

/*
 * The child's page at @addr, with a reference: the one det_child_pages()
 * took, else looked up now.
 */
static struct page *det_child_page(struct det_merger *m, unsigned long addr)
{
	unsigned long i = (addr & ~PMD_MASK) >> PAGE_SHIFT;
	struct page *page = m->cpg[i];

	m->cpg[i] = NULL;
	return page ?: det_get_page(m->child, addr);
}

/* The child's page at @addr and the snapshot's, with references. */
static int det_get_pages(struct det_merger *m, unsigned long addr,
			 struct page **cpage, struct page **rpage)
{
	*cpage = det_child_page(m, addr);
	if (IS_ERR(*cpage))
		return PTR_ERR(*cpage);
	*rpage = det_ref_page(m, addr);
	if (IS_ERR(*rpage)) {
		put_page(*cpage);
		return PTR_ERR(*rpage);
	}
	return 0;
}

/* 0xff in each byte where @a and @b differ, 0 elsewhere. */
static inline u64 det_diff_mask(u64 a, u64 b)
{
	u64 x = a ^ b, low7 = 0x7f7f7f7f7f7f7f7fULL;

	/* Bit 7 of each byte: set iff the byte of @x is not 0. */
	x = (((x & low7) + low7) | x) & ~low7;
	return (x >> 7) * 0xff;
}

/* Drop the references @src holds, leaving it empty. */
static void det_src_put(struct det_src *src)
{
	if (src->folio)
		folio_put(src->folio);
	if (src->cpage)
		put_page(src->cpage);
	if (src->rpage)
		put_page(src->rpage);
	*src = (struct det_src){ };
}

/* A new page charged to the caller, for a copy of the child's page. */
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
 * Byte @i of a page both sides may have changed: the DET_CH_* bits of the
 * child's @c and the caller's @p against the reference @r, counting a
 * conflict into *@n (the page's first one's offset into *@first).
 */
static int det_compare_byte(const u8 *c, const u8 *r, const u8 *p,
			    unsigned long i, unsigned long *n,
			    unsigned long *first)
{
	int ch = p[i] != r[i] ? DET_CH_CALLER : 0;

	if (c[i] == r[i])
		return ch;
	if (ch && p[i] != c[i] && !(*n)++)
		*first = i;
	return ch | DET_CH_CHILD;
}

/* The 64-byte chunks of a page that bytes [@i, @i + @len) touch. */
static inline u64 det_chunks(unsigned long i, unsigned long len)
{
	return BIT_ULL(i / 64) | BIT_ULL((i + len - 1) / 64);
}

/*
 * Bytes [@from, @to) of the three pages, one by one as det_compare_byte()
 * compares them: their DET_CH_* bits, the chunks the child changed into
 * *@chunks.
 */
static int det_compare_bytes(const u8 *c, const u8 *r, const u8 *p,
			     unsigned long from, unsigned long to,
			     u64 *chunks, unsigned long *n,
			     unsigned long *first)
{
	unsigned long i;
	int ch, ret = 0;

	for (i = from; i < to; i++) {
		ch = det_compare_byte(c, r, p, i, n, first);
		if (ch & DET_CH_CHILD)
			*chunks |= det_chunks(i, 1);
		ret |= ch;
	}
	return ret;
}

/*
 * The @len (at most 8) aligned words at byte @i of the three pages, as
 * det_compare_byte() compares each of their bytes, given @ch, the DET_CH_*
 * bits so far; the chunks the child changed go into *@chunks.  The child
 * left most words alone: all @len are checked at once, and the caller's
 * only until the page has one it changed.
 */
static __always_inline int det_compare_words(const u8 *c, const u8 *r,
					     const u8 *p, unsigned long i,
					     unsigned int len, int ch,
					     u64 *chunks, unsigned long *n,
					     unsigned long *first)
{
	const u64 *cw = (const u64 *)(c + i), *rw = (const u64 *)(r + i);
	const u64 *pw = (const u64 *)(p + i);
	u64 d = 0, mask;
	unsigned int k, b;

	for (k = 0; k < len; k++)
		d |= cw[k] ^ rw[k];
	if (!(ch & DET_CH_CALLER)) {
		u64 q = 0;

		for (k = 0; k < len; k++)
			q |= pw[k] ^ rw[k];
		if (q)
			ch |= DET_CH_CALLER;
	}
	if (!d)
		return ch;
	*chunks |= det_chunks(i, 8 * len);
	for (k = 0; k < len; k++) {
		if (cw[k] == rw[k] || pw[k] == rw[k])
			continue;
		mask = det_diff_mask(cw[k], rw[k]);
		/* A conflict: find and count it byte by byte. */
		if (mask & det_diff_mask(pw[k], rw[k]) &
		    det_diff_mask(pw[k], cw[k]))
			for (b = 0; b < 8; b++)
				det_compare_byte(c, r, p, i + 8 * k + b, n,
						 first);
	}
	return ch | DET_CH_CHILD;
}

/*
 * A page both sides may have changed: count its conflicts into the report
 * and return which sides' bytes differ from the reference (DET_CH_*).  If
 * the child changed it, *@src becomes the source of its merged contents:
 * the child's and the snapshot's pages, and the chunks that differ, which
 * pass 2 applies to the caller's page in place (det_apply_chunks()).  So
 * the merge neither copies the caller's page nor replaces it.
 */
static int det_merge_bytes(struct det_merger *m, unsigned long addr,
			   struct det_src *src)
{
	unsigned long lo, hi, i, wlo, whi, n = 0, first = 0;
	struct page *cpage, *rpage, *ppage;
	const u8 *c, *r, *p;
	u64 chunks = 0;
	int ret;

	det_clip(m, addr, &lo, &hi);
	ret = get_user_pages_fast(addr, 1, 0, &ppage) == 1 ? 0 : -EFAULT;
	if (!ret) {
		ret = det_get_pages(m, addr, &cpage, &rpage);
		if (ret)
			put_page(ppage);
	}
	if (ret)
		return ret;
	p = kmap_local_page(ppage);
	c = kmap_local_page(cpage);
	r = kmap_local_page(rpage);
	/* Whole aligned words in the middle, bytes at the ends. */
	wlo = min(ALIGN(lo, 8), hi);
	whi = max(ALIGN_DOWN(hi, 8), wlo);
	ret |= det_compare_bytes(c, r, p, lo, wlo, &chunks, &n, &first);
	for (i = wlo; i + 64 <= whi; i += 64)
		ret = det_compare_words(c, r, p, i, 8, ret, &chunks, &n,
					&first);
	if (i < whi)
		ret = det_compare_words(c, r, p, i, (whi - i) / 8, ret,
					&chunks, &n, &first);
	ret |= det_compare_bytes(c, r, p, whi, hi, &chunks, &n, &first);
	kunmap_local(r);
	kunmap_local(c);
	kunmap_local(p);
	put_page(ppage);
	*src = (struct det_src){ .cpage = cpage, .rpage = rpage,
				 .chunks = chunks };
	if (!(ret & DET_CH_CHILD))
		det_src_put(src);

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
 * Pass 2: apply the child's changes to the caller's page @p: in each
 * chunk of @chunks, within [@lo, @hi), every byte where the child's @c
 * differs from the snapshot's @r.  Pass 1 found no byte there that the
 * caller changed too (else the merge failed): the caller's other bytes
 * stay as they are now.  Only the child's bytes are written.  A word
 * where the child changed some of the eight is read and stored again
 * where the caller is @alone, a deterministic process, whose memory
 * nothing else can write; a master's is updated with cmpxchg instead,
 * since another process may write one of its bytes beside the child's in
 * between, and a plain store would put it back (see the top of this file).
 */
static void det_apply_chunks(const u8 *c, const u8 *r, u8 *p,
			     unsigned long lo, unsigned long hi, u64 chunks,
			     bool alone)
{
	unsigned long b, i, s, e;
	unsigned int k;

	for (; chunks; chunks &= chunks - 1) {
		b = __ffs64(chunks);
		s = max(lo, 64 * b);
		e = min(hi, 64 * b + 64);
		if (e - s == 64) {
			const u64 *cw = (const u64 *)(c + s);
			const u64 *rw = (const u64 *)(r + s);
			u64 *pw = (u64 *)(p + s), mask, old;

			for (k = 0; k < 8; k++) {
				if (cw[k] == rw[k])
					continue;
				mask = det_diff_mask(cw[k], rw[k]);
				if (alone || mask == ~0ULL) {
					pw[k] = (pw[k] & ~mask) | (cw[k] & mask);
					continue;
				}
				old = READ_ONCE(pw[k]);
				while (!try_cmpxchg(&pw[k], &old, (old & ~mask) |
						    (cw[k] & mask)))
					;
			}
			continue;
		}
		/* The range's ends: byte by byte. */
		for (i = s; i < e; i++)
			if (c[i] != r[i])
				p[i] = c[i];
	}
}

/*
 * A page the caller did not change (it still maps the reference's page),
 * the child's @cpage there: DET_CH_CHILD if the child's bytes differ from
 * the reference's, else 0.  Then, if @keep, the reference's page goes to
 * *@keep with its reference.
 * Page identities say where to look, contents decide: a page the child
 * rewrote with the same bytes, or a range khugepaged collapsed, is no
 * change, so the report is a function of the data alone.
 */
static int det_child_changed(struct det_merger *m, unsigned long addr,
			     struct page *cpage, struct page **keep)
{
	struct page *rpage = det_ref_page(m, addr);
	unsigned long lo, hi;
	const u8 *c, *r;
	int ret;

	if (IS_ERR(rpage))
		return PTR_ERR(rpage);
	det_clip(m, addr, &lo, &hi);
	c = kmap_local_page(cpage);
	r = kmap_local_page(rpage);
	ret = memcmp(c + lo, r + lo, hi - lo) ? DET_CH_CHILD : 0;
	kunmap_local(r);
	kunmap_local(c);
	if (ret && keep)
		*keep = rpage;
	else
		put_page(rpage);
	return ret;
}

static int det_merge_classify(struct det_merger *m, unsigned long base);

/*
 * Does the child's page at @a merge?  Not in a hole, a special mapping
 * (the vDSO a master's copy still had) or shared memory (already
 * common).  *@vma caches the last lookup; caller holds @mm's mmap lock.
 */
static bool det_mergeable(struct mm_struct *mm, struct vm_area_struct **vma,
			  unsigned long a)
{
	if (!*vma || a < (*vma)->vm_start || a >= (*vma)->vm_end)
		*vma = vma_lookup(mm, a);
	return *vma && !((*vma)->vm_flags & (VM_SPECIAL | VM_SHARED));
}

/* Page @i of the block is one the child may have changed. */
static void det_queue_index(struct det_merger *m, unsigned long i)
{
	m->cp[i] = DET_M_CHILD;
	m->src[i] = (struct det_src){ };
	m->cpg[i] = NULL;
	m->idx[m->nidx++] = i;
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

	/*
	 * Lock order: the child's mmap lock, then the reference's, nested
	 * (same lock class).  Nothing takes them the other way round: the
	 * reference is only ever locked here, and no task runs in it.  The
	 * caller's own is held with the child's only in
	 * det_take_child_pages(), outside it (the child's for writing), and
	 * never with the reference's.
	 */
	mmap_read_lock(m->child);
	down_read_nested(&m->ref->mmap_lock, SINGLE_DEPTH_NESTING);
	cempty = det_block_pfns(m->child, base, m->cp, NULL, 0);
	rempty = det_block_pfns(m->ref, base, m->rp, NULL, 0);
	up_read(&m->ref->mmap_lock);
	if (cempty && rempty) {
		/* Neither has any page table here: skip the whole stretch. */
		next = min3(cempty, rempty, m->end);
		m->rep.scanned_pages += (PAGE_ALIGN(next) - addr) >> PAGE_SHIFT;
		*pnext = PAGE_ALIGN(next);
		mmap_read_unlock(m->child);
		return 0;
	}
	if (cempty)
		memset(m->cp, 0, PTRS_PER_PTE * sizeof(*m->cp));
	if (rempty)
		memset(m->rp, 0, PTRS_PER_PTE * sizeof(*m->rp));
	m->nidx = 0;
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
		if (!det_mergeable(m->child, &vma, a)) {
			m->cp[i] = 0;
			continue;
		}
		det_queue_index(m, i);
	}
	mmap_read_unlock(m->child);
	return m->nidx ? det_merge_classify(m, base) : 0;
}

/*
 * The same for a child with a write log: only the pages it logged in the
 * block at @addr (up to @next) are looked at, each against the log's copy
 * of the snapshot.
 */
static int det_merge_logged(struct det_merger *m, unsigned long addr,
			    unsigned long next)
{
	struct vm_area_struct *vma = NULL;
	unsigned long a, i, base = addr & PMD_MASK;
	unsigned int k, n;

	m->nidx = 0;
	mmap_read_lock(m->child);
	/*
	 * The logged pages go into m->idx[] first; det_queue_index() then
	 * keeps the mergeable ones in place (m->nidx <= k).  Their
	 * snapshot pfns (0 for zeros: DET_PFN_NONE) go into m->rp[].
	 */
	n = det_wlog_block(m->child, base, addr, next, m->idx, m->rp);
	for (k = 0; k < n; k++) {
		i = m->idx[k];
		a = base + i * PAGE_SIZE;
		m->rep.scanned_pages++;
		if (!det_mergeable(m->child, &vma, a))
			continue;
		if (m->rp[i] != DET_PFN_NONE)
			m->rp[i] = det_pfn_tag(m->rp[i]);
		det_queue_index(m, i);
	}
	mmap_read_unlock(m->child);
	return m->nidx ? det_merge_classify(m, base) : 0;
}

/*
 * Is the page at @a, block index @i, one only the child can have changed
 * (the caller still maps the reference's page), and inside the range
 * whole, so that the child's page is its final contents?
 */
static bool det_whole_one_sided(struct det_merger *m, unsigned long a,
				unsigned long i)
{
	return m->pp[i] == m->rp[i] && m->pp[i] != DET_PFN_UNKNOWN &&
	       a >= m->start && a + PAGE_SIZE <= m->end;
}

/*
 * Does a page the child's write log holds count as the child's change
 * without a look at its bytes?  Into a deterministic caller, yes: which
 * pages a deterministic child writes is a function of its inputs, as its
 * bytes are, so the report stays one; and a page it wrote whole with the
 * bytes it held, taken whole, merges to the same contents.  Reading the
 * two pages only to compare them was 1.0 of the 2.3 us a page only the
 * child wrote cost to merge under TCG.  A master's merge, or one through
 * a reference, counts by content (det-merge.7).
 */
static bool det_written_changed(struct det_merger *m)
{
	return !m->ref && !current->det->master;
}

/*
 * Record the DET_CH_* bits @ch of the page at block index @i: queued if
 * the child's bytes differ, counted if so or if det_written_changed(),
 * as compared if the caller's bytes differ too, else as copied.
 */
static void det_classified(struct det_merger *m, unsigned long i, int ch)
{
	if ((ch & DET_CH_CHILD) || det_written_changed(m)) {
		if (ch & DET_CH_CALLER)
			m->rep.compared_pages++;
		else
			m->rep.copied_pages++;
	}
	if (!(ch & DET_CH_CHILD))
		m->cp[i] = 0;
	else if (ch & DET_CH_CALLER)
		m->cp[i] = DET_M_BOTH;
}

/*
 * Classify the whole page at @a, block index @i, that the child changed
 * and the caller did not, keeping the child's page, with its reference,
 * in m->src[] if it changed.  A master's merge keeps the reference's page
 * too: another process may write the caller's page before pass 2 installs
 * the child's, and pass 2 then applies the child's changes to it instead
 * (det_install_folio()).
 */
static int det_take_page(struct det_merger *m, unsigned long a,
			 unsigned long i)
{
	struct page *page = det_child_page(m, a);
	int ret;

	if (IS_ERR(page))
		return PTR_ERR(page);
	if (det_written_changed(m))
		ret = DET_CH_CHILD;
	else
		ret = det_child_changed(m, a, page,
					current->det->master ?
					&m->src[i].rpage : NULL);
	if (ret < 0) {
		put_page(page);
		return ret;
	}
	det_classified(m, i, ret);
	if (m->cp[i]) {
		m->cp[i] |= DET_M_TAKE;
		m->src[i].folio = page_folio(page);
	} else {
		put_page(page);
	}
	return 0;
}

/*
 * References on the child's pages that the block at @base queued
 * (m->idx[]) into m->cpg[], in one walk of the child's page
 * table under its lock.  Where the walk finds no small page mapped (not
 * present, the zero page, a huge mapping), m->cpg[] stays NULL and
 * det_child_page() looks the page up.
 */
static void det_child_pages(struct det_merger *m, unsigned long base)
{
	struct vm_area_struct *vma = NULL;
	unsigned long a, i, empty;
	unsigned int k;
	struct page *page;
	spinlock_t *ptl;
	pmd_t *pmdp, pmd;
	pte_t *pte, e;

	mmap_read_lock(m->child);
	pmdp = det_find_pmd(m->child, base, &empty);
	pmd = pmdp ? pmdp_get_lockless(pmdp) : __pmd(0);
	pte = pmd_present(pmd) && !pmd_leaf(pmd) ?
	      pte_offset_map_lock(m->child, pmdp, base, &ptl) : NULL;
	for (k = 0; pte && k < m->nidx; k++) {
		i = m->idx[k];
		a = base + i * PAGE_SIZE;
		e = ptep_get(pte + i);
		if (!pte_present(e))
			continue;
		if (!vma || a < vma->vm_start || a >= vma->vm_end)
			vma = vma_lookup(m->child, a);
		page = vma ? vm_normal_page(vma, a, e) : NULL;
		if (page) {
			get_page(page);
			m->cpg[i] = page;
		}
	}
	if (pte)
		pte_unmap_unlock(pte, ptl);
	mmap_read_unlock(m->child);
}

/*
 * The second half of either: for each page of the PMD-sized block at
 * @base the child may have changed (m->idx[]), decide by content whether
 * the caller changed it too, compare those for conflicts, and queue the
 * writes.
 */
static int det_merge_classify(struct det_merger *m, unsigned long base)
{
	struct vm_area_struct *vma;
	unsigned long a, i;
	unsigned int k;
	int ret;

	mmap_read_lock(current->mm);
	if (det_block_pfns(current->mm, base, m->pp, m->idx, m->nidx))
		for (k = 0; k < m->nidx; k++)
			m->pp[m->idx[k]] = DET_PFN_NONE;
	mmap_read_unlock(current->mm);
	det_child_pages(m, base);
	for (k = 0; k < m->nidx; k++) {
		i = m->idx[k];
		a = base + i * PAGE_SIZE;
		/*
		 * Where the caller no longer maps the reference's page, it
		 * may have changed it too: compare all three, noting where
		 * the child's bytes go.  So for a page the range cuts: the
		 * caller's bytes around the child's.
		 */
		if (!det_whole_one_sided(m, a, i)) {
			ret = det_merge_bytes(m, a, &m->src[i]);
			if (ret < 0)
				goto out;
			det_classified(m, i, ret);
			continue;
		}
		ret = det_take_page(m, a, i);
		if (ret < 0)
			goto out;
	}

	/*
	 * The caller must still be able to take the bytes: a page it no
	 * longer maps, or maps read-only, fails the merge now, before
	 * anything is written.
	 */
	ret = 0;
	vma = NULL;
	mmap_read_lock(current->mm);
	for (k = 0; k < m->nidx && !ret; k++) {
		if (!m->cp[m->idx[k]])
			continue;
		a = base + m->idx[k] * PAGE_SIZE;
		if (!vma || a < vma->vm_start || a >= vma->vm_end)
			vma = vma_lookup(current->mm, a);
		if (!vma || !(vma->vm_flags & VM_WRITE))
			ret = -EFAULT;
	}
	mmap_read_unlock(current->mm);
	for (k = 0; k < m->nidx && !ret; k++) {
		i = m->idx[k];
		if (m->cp[i])
			ret = det_todo_add(m, (base + i * PAGE_SIZE) | m->cp[i],
					   &m->src[i]);
		if (!ret)
			m->src[i] = (struct det_src){ };
	}
out:
	/* Pages prepared for what is not queued after a failure. */
	for (k = 0; k < m->nidx; k++) {
		i = m->idx[k];
		det_src_put(&m->src[i]);
		if (m->cpg[i])
			put_page(m->cpg[i]);
		m->cpg[i] = NULL;
	}
	return ret;
}

/*
 * May the caller's page in @vma be replaced by a new private anonymous
 * page, as a copy-on-write fault would?  Not in shared, special or hugetlb
 * mappings, nor where userfaultfd watches: there the merge writes through
 * the caller's own page, taken in pass 1.
 */
static bool det_installable(struct vm_area_struct *vma)
{
	return !(vma->vm_flags & (VM_SHARED | VM_SPECIAL | VM_HUGETLB)) &&
	       !userfaultfd_armed(vma);
}

/* Is the child's @cvma linked to @av, so that @av's rmap walk finds it? */
bool det_vma_linked(struct vm_area_struct *cvma, struct anon_vma *av)
{
	struct anon_vma_chain *avc;

	list_for_each_entry(avc, &cvma->anon_vma_chain, same_vma)
		if (avc->anon_vma == av)
			return true;
	return false;
}

/*
 * Pass 1: share the child's page @page at @addr (in @cvma) with the caller
 * instead of copying it, as fork() shares a page between parent and child:
 * write-protected in the child, mapped once more for the caller's page
 * table (pass 2, det_install_folio()), and moved to the caller's anon_vma,
 * whose rmap walk finds both mappings (the child's VMA was linked to it
 * when the child was made).  Only a page the child alone maps, that is
 * neither large, KSM nor in the swap cache, at the same offset in both
 * VMAs.  Caller holds the caller's mmap lock, the child's for writing
 * and inside its write_protect_seq (as fork() holds the parent's), and a
 * reference on @page, which becomes the caller's mapping's.
 */
static bool det_share_page(struct vm_area_struct *cvma,
			   struct vm_area_struct *vma, unsigned long addr,
			   struct page *page)
{
	struct folio *folio = page_folio(page);
	struct mm_struct *cmm = cvma->vm_mm;
	struct mmu_notifier_range range;
	unsigned long empty;
	bool shared = false;
	spinlock_t *ptl;
	pmd_t *pmdp;
	pte_t *pte, e;

	if (!det_folio_plain_anon(folio) ||
	    !det_installable(vma) || !vma->anon_vma ||
	    (vma->vm_flags & VM_LOCKED) ||
	    linear_page_index(vma, addr) != linear_page_index(cvma, addr) ||
	    !det_vma_linked(cvma, vma->anon_vma))
		return false;
	pmdp = det_find_pmd(cmm, addr, &empty);
	if (!pmdp)
		return false;
	mmu_notifier_range_init(&range, MMU_NOTIFY_PROTECTION_PAGE, 0, cmm,
				addr, addr + PAGE_SIZE);
	mmu_notifier_invalidate_range_start(&range);
	pte = pte_offset_map_lock(cmm, pmdp, addr, &ptl);
	if (!pte)
		goto out;
	e = ptep_get(pte);
	if (pte_present(e) && pte_pfn(e) == page_to_pfn(page) &&
	    folio_mapcount(folio) == 1 && folio_trylock(folio)) {
		if (!folio_try_dup_anon_rmap_pte(folio, page, cvma)) {
			/* The child flushes its TLB before it runs again. */
			if (pte_write(e))
				ptep_set_wrprotect(cmm, addr, pte);
			folio_move_anon_rmap(folio, vma);
			shared = true;
		}
		folio_unlock(folio);
	}
	pte_unmap_unlock(pte, ptl);
out:
	mmu_notifier_invalidate_range_end(&range);
	return shared;
}

/*
 * Pass 1, last, under the caller's mmap lock: each queued page whose final
 * contents are the child's own page (DET_M_TAKE) takes it, shared with
 * the child (det_share_page()) or else copied.  Not where the caller's
 * page is taken: pass 2 copies from the child's page into it.
 */
static int det_take_child_pages(struct det_merger *m)
{
	struct vm_area_struct *cvma = NULL, *vma = NULL;
	struct det_todo *t;
	struct det_item *it;
	int ret = 0;

	/* The caller's, then the child's; see det_merge_block(). */
	down_write_nested(&m->child->mmap_lock, SINGLE_DEPTH_NESTING);
	raw_write_seqcount_begin(&m->child->write_protect_seq);
	det_for_each_item(m, t, it) {
		unsigned long a = it->addr & PAGE_MASK;
		struct page *page;
		struct folio *folio;

		if (!(it->addr & DET_M_TAKE) || it->wpage)
			continue;
		page = folio_page(it->src.folio, 0);
		if (det_mergeable(m->child, &cvma, a) &&
		    det_mergeable(current->mm, &vma, a) &&
		    det_share_page(cvma, vma, a, page)) {
			it->shared = true;
			m->stale = true;
			continue;
		}
		folio = det_new_folio();
		if (!folio) {
			ret = -ENOMEM;
			break;
		}
		copy_highpage(folio_page(folio, 0), page);
		__folio_mark_uptodate(folio);
		folio_put(it->src.folio);
		it->src.folio = folio;
		cond_resched();
	}
	raw_write_seqcount_end(&m->child->write_protect_seq);
	up_write(&m->child->mmap_lock);
	return ret;
}

/*
 * Pass 1, after classification, without the caller's mmap lock: the pages
 * of a logged caller change now without a fault, so each is logged first
 * (det_wlog_prepare() may fault it in).
 */
static int det_merge_log(struct det_merger *m)
{
	struct det_todo *t;
	struct det_item *it;
	int ret;

	if (!det_wlog_on(current->mm))
		return 0;
	det_for_each_item(m, t, it) {
		if (fatal_signal_pending(current))
			return -EINTR;
		ret = det_wlog_prepare(current->mm, it->addr & PAGE_MASK);
		if (ret)
			return ret;
	}
	return 0;
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
 * The caller's page at @addr of @mm (current's), taken for writing into
 * *@page with a reference, as a write fault would make it the caller's own
 * (copying a page still shared, logging a logged caller's).  A reference,
 * not a pin: a pin would mark the caller's mm as having pinned pages for
 * good (MMF_HAS_PINNED), and its later children would get no write log
 * (det_wlog_usable()).  Caller holds the mmap lock until pass 2 has
 * written, which keeps fork() from sharing the page meanwhile.
 */
static int det_take_caller_page(struct mm_struct *mm, unsigned long addr,
				struct page **page)
{
	/* Mapped writable already, the common case: no walk, no fault. */
	if (get_user_pages_fast_only(addr, 1, FOLL_WRITE, page) == 1)
		return 0;
	return get_user_pages_remote(mm, addr, 1, FOLL_WRITE, page, NULL) == 1 ?
	       0 : -EFAULT;
}

/*
 * Pass 1, last step, under the caller's mmap lock (held on through pass
 * 2): every page the merge writes is still mapped writable, and either has
 * a page table ready for its new page or is taken for writing
 * (det_take_caller_page()): where the child's changes are applied in
 * place, or the mapping cannot take a new page.  Pass 2 then needs
 * nothing that can fail.
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
		if (it->src.folio && det_installable(vma)) {
			ret = anon_vma_prepare(vma);
			if (!ret)
				ret = det_prepare_pte(vma, a);
		} else {
			ret = det_take_caller_page(mm, a, &it->wpage);
		}
		if (ret)
			return ret;
		cond_resched();
	}
	return det_take_child_pages(m);
}

/*
 * Drop a page prepared for @vma that is not installed: a shared one's
 * mapping count for the caller too (det_share_page()).  Caller holds the
 * mmap lock it was prepared under.
 */
static void det_unshare(struct vm_area_struct *vma, struct folio *folio,
			bool shared)
{
	if (shared)
		folio_remove_rmap_pte(folio, folio_page(folio, 0), vma);
	folio_put(folio);
}

/* After a failed pass 1, under its mmap lock: drop the shared pages. */
static void det_merge_unshare(struct det_merger *m)
{
	struct vm_area_struct *vma = NULL;
	struct det_todo *t;
	struct det_item *it;

	det_for_each_item(m, t, it) {
		unsigned long a = it->addr & PAGE_MASK;

		if (!it->shared || !it->src.folio)
			continue;
		if (!vma || a < vma->vm_start || a >= vma->vm_end)
			vma = vma_lookup(current->mm, a);
		det_unshare(vma, it->src.folio, true);
		it->src.folio = NULL;
	}
}

/*
 * Pass 2: det_apply_chunks() from the child's @cpage and the snapshot's
 * @rpage to the caller's page @ppage.
 */
static void det_apply_page(struct page *ppage, struct page *cpage,
			   struct page *rpage, unsigned long lo,
			   unsigned long hi, u64 chunks, bool alone)
{
	const u8 *c, *r;
	u8 *p;

	p = kmap_local_page(ppage);
	c = kmap_local_page(cpage);
	r = kmap_local_page(rpage);
	det_apply_chunks(c, r, p, lo, hi, chunks, alone);
	kunmap_local(r);
	kunmap_local(c);
	kunmap_local(p);
	flush_dcache_page(ppage);
}

/*
 * Pass 2: write @it's final contents into the caller's page it took;
 * @alone as det_apply_chunks() takes it.  The child's whole page is
 * copied, but for a master's (det_take_page() kept the snapshot's page):
 * its changes alone, so that nothing another process wrote is undone.
 */
static void det_write_taken(struct det_item *it, bool alone)
{
	if (!it->src.folio)
		det_apply_page(it->wpage, it->src.cpage, it->src.rpage, it->lo,
			       it->hi, it->src.chunks, alone);
	else if (it->src.rpage)
		det_apply_page(it->wpage, folio_page(it->src.folio, 0),
			       it->src.rpage, it->lo, it->hi, ~0ULL, alone);
	else
		memcpy_page(it->wpage, it->lo, folio_page(it->src.folio, 0),
			    it->lo, it->hi - it->lo);
}

/*
 * Pass 2: replace the caller's page at @addr (in @vma, an installable
 * mapping) with @it's page, as a copy-on-write fault would.  Cannot fail:
 * the page table exists (det_prepare_pte(), mmap lock held since); an old
 * page is released whatever it is (present, swapped out, a marker), and
 * a migration in flight is waited for.
 *
 * But where a master's page is no longer the snapshot's that pass 1 saw
 * there, another process has written it since (a write to the snapshot's
 * page, still shared, makes the caller a page of its own): the child's
 * changes are applied to that page instead, so that the write stands.
 * A page of its own that is only the snapshot's migrated takes them the
 * same way.
 */
static void det_install_folio(struct vm_area_struct *vma, unsigned long addr,
			      struct det_item *it)
{
	struct folio *old_folio = NULL, *folio = it->src.folio;
	struct mm_struct *mm = vma->vm_mm;
	struct mmu_notifier_range range;
	struct page *old_page = NULL;
	pte_t *pte = NULL, old, entry;
	bool shared = it->shared;
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
		det_unshare(vma, folio, shared);
		return;
	}
	old = ptep_get(pte);
	if (pte_present(old)) {
		old_page = vm_normal_page(vma, addr, old);
		if (it->src.rpage && old_page && old_page != it->src.rpage &&
		    PageAnon(old_page) && PageAnonExclusive(old_page)) {
			det_apply_page(old_page, folio_page(folio, 0),
				       it->src.rpage, it->lo, it->hi, ~0ULL,
				       false);
			pte_unmap_unlock(pte, ptl);
			mmu_notifier_invalidate_range_end(&range);
			det_unshare(vma, folio, shared);
			return;
		}
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
	entry = pte_sw_mkyoung(mk_pte(&folio->page, vma->vm_page_prot));
	if (shared) {
		/* Mapped and counted already (det_share_page()): read-only. */
		entry = pte_wrprotect(entry);
	} else {
		entry = maybe_mkwrite(pte_mkdirty(entry), vma);
		folio_add_new_anon_rmap(folio, vma, addr, RMAP_EXCLUSIVE);
		folio_add_lru_vma(folio, vma);
	}
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
	bool alone = !current->det->master;
	struct vm_area_struct *vma = NULL;
	struct det_todo *t;
	struct det_item *it;

	mmap_assert_locked(current->mm);
	det_for_each_item(m, t, it) {
		unsigned long a = it->addr & PAGE_MASK;

		if (it->wpage) {
			det_write_taken(it, alone);
			set_page_dirty_lock(it->wpage);
			put_page(it->wpage);
			it->wpage = NULL;
			continue;
		}
		if (!vma || a < vma->vm_start || a >= vma->vm_end)
			vma = vma_lookup(current->mm, a);
		det_install_folio(vma, a, it);
		it->src.folio = NULL;
		cond_resched();
	}
}

/* Classify one range [@r->start, +@r->size) into @m: pass 1's first part. */
static int det_merge_range(struct det_proc *d, struct det_merger *m,
			   const struct det_range *r)
{
	unsigned long addr, next;
	int ret;

	if (!r->size)
		return 0;
	m->start = r->start;
	m->end = r->start + r->size;
	for (addr = m->start & PAGE_MASK; addr < m->end; addr = next) {
		/* With a write log, from one logged page to the next. */
		if (!m->ref && !det_wlog_next(m->child, &addr, m->end))
			break;
		next = min((addr & PMD_MASK) + PMD_SIZE, m->end);
		if (fatal_signal_pending(current))
			return -EINTR;
		if (det_killed(d))
			return -ECHILD;
		ret = m->ref ? det_merge_block(m, addr, &next) :
			       det_merge_logged(m, addr, next);
		if (ret)
			return ret;
		cond_resched();
	}
	return 0;
}

/* Does the report at @report (@size bytes) touch a page of any range? */
static bool det_report_merged(const struct det_range *r, unsigned long nr,
			      unsigned long report, unsigned long size)
{
	unsigned long i;

	for (i = 0; i < nr; i++)
		if (r[i].size && report < PAGE_ALIGN(r[i].start + r[i].size) &&
		    report + size > (r[i].start & PAGE_MASK))
			return true;
	return false;
}

/*
 * Write the report: the first @size bytes of the kernel's, zeros past its
 * end (a program built for a larger report sees its new fields as 0).
 */
static int det_report_write(const struct det_merge *rep, unsigned long report,
			    unsigned long size)
{
	unsigned long n = min_t(unsigned long, size, sizeof(*rep));

	if (copy_to_user((void __user *)report, rep, n))
		return -EFAULT;
	if (size > n && clear_user((void __user *)(report + n), size - n))
		return -EFAULT;
	return 0;
}

/*
 * DET_MERGE of @nr ranges (ascending, no page shared between two) into
 * the caller, all or nothing; report to @report (@report_size bytes).
 */
int det_merge(struct det_proc *d, const struct det_range *ranges,
	      unsigned long nr, unsigned long report, unsigned long report_size)
{
	struct det_merger m = { };
	struct det_todo *t;
	unsigned long i;
	int ret = 0;

	ret = det_mm_get(d, &m.child, &m.ref);
	if (ret)
		return ret;
	/*
	 * A block's worth of each, and nothing zeroed: an entry is set for
	 * each page a block queues (det_queue_index()) before anything
	 * reads it.  A page or less apiece (slab), but for m.src, 16 KiB
	 * (32 bytes an entry): one order-2 allocation per merge.
	 */
	m.cp = kmalloc_array(PTRS_PER_PTE, sizeof(*m.cp), GFP_KERNEL);
	m.rp = kmalloc_array(PTRS_PER_PTE, sizeof(*m.rp), GFP_KERNEL);
	m.pp = kmalloc_array(PTRS_PER_PTE, sizeof(*m.pp), GFP_KERNEL);
	m.src = kmalloc_array(PTRS_PER_PTE, sizeof(*m.src), GFP_KERNEL);
	m.cpg = kmalloc_array(PTRS_PER_PTE, sizeof(*m.cpg), GFP_KERNEL);
	m.idx = kmalloc_array(PTRS_PER_PTE, sizeof(*m.idx), GFP_KERNEL);
	if (!m.cp || !m.rp || !m.pp || !m.src || !m.cpg || !m.idx) {
		ret = -ENOMEM;
		goto out;
	}

	for (i = 0; i < nr && !ret; i++)
		ret = det_merge_range(d, &m, &ranges[i]);
	if (ret)
		goto out;
	/*
	 * The report is final after pass 1.  Written now, a bad report
	 * pointer fails the merge before anything is merged.
	 */
	if (report) {
		ret = det_report_write(&m.rep, report, report_size);
		if (ret)
			goto out;
	}
	if (m.rep.conflict_bytes) {
		ret = -DET_E_CONFLICT;
		goto out;
	}
	ret = det_merge_log(&m);
	if (ret || !m.head)
		goto out;
	ret = mmap_read_lock_killable(current->mm);
	if (ret)
		goto out;
	ret = det_merge_ready(&m);
	if (!ret)
		det_merge_commit(&m);	/* cannot fail */
	else
		det_merge_unshare(&m);
	mmap_read_unlock(current->mm);
	/*
	 * A report inside a merged range may just have been replaced by the
	 * child's bytes: write it again.  Its pages are present and
	 * writable now, so this does not fail.
	 */
	if (!ret && report &&
	    det_report_merged(ranges, nr, report, report_size))
		ret = det_report_write(&m.rep, report, report_size);
out:
	while ((t = m.head)) {
		struct det_item *it;

		m.head = t->next;
		for (it = t->item; it < t->item + t->n; it++) {
			if (it->wpage)
				put_page(it->wpage);
			det_src_put(&it->src);
		}
		kfree(t);
	}
	kfree(m.idx);
	kfree(m.cpg);
	kfree(m.src);
	kfree(m.pp);
	kfree(m.rp);
	kfree(m.cp);
	if (m.ref)
		mmput(m.ref);
	mmput(m.child);
	if (m.stale)
		det_tlb_stale(d);
	return ret;
}

/* The user ABI's sizes, and no holes the compiler could leave in them. */
static inline void det_merge_check_abi(void)
{
	BUILD_BUG_ON(sizeof(struct det_merge) != DET_MERGE_SIZE);
	BUILD_BUG_ON(sizeof(struct det_merge) != 8 * sizeof(__u64));
	BUILD_BUG_ON(sizeof(struct det_range) != 2 * sizeof(__u64));
	BUILD_BUG_ON(sizeof(struct det_merge_args) !=
		     DET_MERGE_ARGS_SIZE_VER0);
	BUILD_BUG_ON(sizeof(struct det_merge_args) != 4 * sizeof(__u64));
}

/*
 * The ranges and report of a DET_MERGE call, in either form, checked;
 * then the merge.  @start, @size, @report as the call passed them.
 */
int det_merge_call(struct det_proc *d, unsigned long flags,
		   unsigned long start, unsigned long size,
		   unsigned long report)
{
	struct det_range one = { .start = start, .size = size }, *r = &one;
	struct det_merge_args args;
	unsigned long i, end = 0;	/* the ranges' page end so far */
	int ret;

	det_merge_check_abi();
	if (!(flags & DET_MERGE_ARGS))
		return det_merge(d, &one, 1, report, sizeof(struct det_merge));

	ret = copy_struct_from_user(&args, sizeof(args),
				    (const void __user *)start, size);
	if (ret)
		return ret;
	if (!args.nr_ranges || args.nr_ranges > DET_MERGE_MAX_RANGES ||
	    !args.ranges || (!args.report != !args.report_size) ||
	    args.report_size > PAGE_SIZE)
		return -EINVAL;
	r = kmalloc_array(args.nr_ranges, sizeof(*r), GFP_KERNEL);
	if (!r)
		return -ENOMEM;
	ret = -EFAULT;
	if (copy_from_user(r, u64_to_user_ptr(args.ranges),
			   args.nr_ranges * sizeof(*r)))
		goto out;
	ret = -EINVAL;
	for (i = 0; i < args.nr_ranges; i++) {
		if (r[i].size > TASK_SIZE_MAX ||
		    r[i].start > TASK_SIZE_MAX - r[i].size)
			goto out;
		if (!r[i].size)
			continue;
		/* Ascending, and no page in two ranges. */
		if ((r[i].start & PAGE_MASK) < end)
			goto out;
		end = PAGE_ALIGN(r[i].start + r[i].size);
	}
	ret = det_merge(d, r, args.nr_ranges, args.report, args.report_size);
out:
	kfree(r);
	return ret;
}
