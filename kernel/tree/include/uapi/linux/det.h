/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * Deterministic process groups: dput(), dget(), dret().
 *
 * A legacy process becomes the master of a deterministic process group
 * with dput(0, DET_BECOME_MASTER, 0, 0, 0).  Every process it creates
 * with dput() is deterministic, and so is their whole subtree.  A
 * deterministic process talks only to its parent and its children, through
 * these three system calls; any other system call, and any fault, stops it
 * (an implicit dret()) and its parent decides what happens next.
 *
 * The flag and status values are those of the v3.0-det port (Linux 3.0)
 * and its libdeterm, so programs written for it move over easily.  See
 * docs/kernel.md for the full description.
 */
#ifndef _UAPI_LINUX_DET_H
#define _UAPI_LINUX_DET_H

#include <linux/types.h>

/*
 * System call numbers (x86_64 only; not available to x32 or 32-bit
 * tasks).  v3.0-det used 309-311, which belong to other system calls
 * today.  detlinux takes numbers far above what upstream allocates and
 * outside the legacy x32 range 512-547.  They also appear as __NR_dput,
 * __NR_dget and __NR_dret in <asm/unistd_64.h>.
 *
 *   long dput(unsigned long child, unsigned long flags,
 *             unsigned long start, unsigned long size, unsigned long dststart);
 *   long dget(unsigned long child, unsigned long flags,
 *             unsigned long start, unsigned long size, unsigned long dststart);
 *   long dret(void);
 */
#define DET_NR_DPUT		1000
#define DET_NR_DGET		1001
#define DET_NR_DRET		1002

/*
 * Operations, in the low 16 bits of @flags: one per call, except that
 * dput() takes DET_REGS together with DET_SNAP (the snapshot needs no
 * range, so @start and @size are the register buffer; the snapshot is
 * taken first).  An operation's options ("op-flags") live in bits 16-23
 * and mean different things for different operations.
 */
#define DET_REGS		0x00000001 /* put/get: copy registers */
#define DET_BECOME_MASTER	0x00000002 /* put: caller becomes a master */
#define DET_GET_STATUS		0x00000004 /* get: return child's status */
#define DET_KILL		0x00000008 /* put: destroy the child */
#define DET_ALLOW_SIGNALS	0x00000010 /* put: signals that end waits */
#define DET_VM_ZERO		0x00000020 /* put: map fresh zero pages */
#define DET_VM_COPY		0x00000040 /* put/get: copy a range */
#define DET_SNAP		0x00000080 /* put: COW copy + reference */
#define DET_MERGE		0x00000100 /* get: three-way merge */
#define DET_PERM		0x00000200 /* put: set page protection */
/* get: the group's time in memory operations (masters only) */
#define DET_GET_TIMES		0x00000400

/*
 * Memory operations (see docs/kernel.md and docs/det-merge.7.md):
 *
 * dput(c, DET_VM_ZERO | prot, start, size, 0): the child's pages
 *	[start, start+size) become fresh private anonymous zero pages with
 *	protection @prot (DET_PROT_*); prot 0 unmaps them instead.  @start
 *	and @size page-aligned.
 * dput(c, DET_PERM | prot, start, size, 0): set the protection of the
 *	child's mapped pages [start, start+size) (page-aligned) to @prot;
 *	DET_PROT_* 0 is PROT_NONE.  Every page must be mapped (ENOMEM).
 * dput(c, DET_VM_COPY, start, size, dststart): the caller's bytes
 *	[start, start+size) are copied to the child at @dststart.
 * dget(c, DET_VM_COPY, start, size, dststart): the child's bytes
 *	[dststart, dststart+size) are copied to the caller at @start.
 *	@start is the caller's address and @dststart the child's, for put
 *	and get alike (as in v3.0-det and Determinator).
 *	Either way @dststart - @start is a multiple of the page size; the
 *	ends may be unaligned.  Both ranges must be mapped; the destination
 *	keeps its mappings and protection (writes go through like
 *	ptrace's, copy-on-write).
 * dput(c, DET_SNAP, 0, 0, 0): the child's whole address space becomes a
 *	copy-on-write copy of the caller's, and a second copy is kept as
 *	the reference for DET_MERGE.  On a new ID the child is created
 *	(fork-like) with it.
 * dput(c, DET_SNAP | DET_SNAP_EXCEPT, 0, 0, &range): the same, but the
 *	child's copy and its reference read zeros in @range (a struct
 *	det_range), where the caller keeps its pages to itself.
 * dput(c, DET_SNAP | DET_SNAP_GIVE, 0, 0, ranges): the same, with
 *	ranges[0] left out (size 0: nothing) and ranges[1] handed to the
 *	child: its copy holds the caller's bytes there, its reference reads
 *	zeros there, and the caller's mapping there is emptied.
 * dget(c, DET_MERGE, start, size, report): bytes of [start, start+size)
 *	the child changed since the snapshot (child != reference) are
 *	written into the caller at the same addresses.  A byte both sides
 *	changed to different values is a conflict: then nothing at all is
 *	merged, the call fails with EBADE (DET_E_CONFLICT) and the report
 *	says where.  @report, if not 0, points at a struct det_merge,
 *	written on success and on conflict.
 * dget(c, DET_MERGE | DET_MERGE_ARGS, args, sizeof(*args), 0): the same
 *	for each of several ranges at once, all or nothing: on a conflict
 *	in any range, or any other failure, no range is merged.  See struct
 *	det_merge_args.
 * A child's memory outlives its exit: dget() DET_VM_COPY and DET_MERGE
 * work on an exited child until DET_KILL frees its ID.
 */
#define DET_E_CONFLICT		52 /* EBADE: DET_MERGE found a conflict */

/*
 * Op-flags of DET_REGS: which register sets to copy (at least one).  The
 * buffer holds the selected sets in this order, and @size must be their
 * total.  DET_XSTATE_REGS is the whole extended state (x87, SSE, AVX and
 * later) in XSAVE standard format, as ptrace's NT_X86_XSTATE regset; its
 * size depends on the CPU.  dget(0, DET_REGS | <sets>, 0, 0, 0) returns the
 * buffer size for <sets> in bytes (no child involved), e.g.
 * dget(0, DET_REGS | DET_XSTATE_REGS, 0, 0, 0) the XSAVE size.  On a CPU
 * without XSAVE, DET_XSTATE_REGS is an op-flag DET_REGS does not take
 * (EINVAL).
 */
#define DET_GENERAL_REGS	0x00010000 /* struct user_regs_struct */
#define DET_FP_REGS		0x00020000 /* struct user_fpregs_struct */
#define DET_XSTATE_REGS		0x00040000 /* XSAVE area, standard format */

/* Op-flag of DET_GET_STATUS: do not wait (masters only). */
#define DET_DONT_WAIT		0x00010000

/* Op-flag of DET_KILL: do not wait for the child to stop first. */
#define DET_KILL_POISON		0x00010000
/*
 * Op-flag of DET_KILL: return at once, its ID free, while the subtree
 * dies on its own; the caller's exit still waits for it.
 */
#define DET_KILL_NOWAIT		0x00020000

/* Op-flags of DET_VM_ZERO and DET_PERM: protection of the range. */
#define DET_PROT_READ		0x00010000
#define DET_PROT_WRITE		0x00020000
#define DET_PROT_EXEC		0x00040000

/*
 * Op-flag of DET_MERGE: @start points at a struct det_merge_args of @size
 * bytes (several ranges, one report of a given size; @dststart 0).
 */
#define DET_MERGE_ARGS		0x00010000

/*
 * Op-flag of DET_SNAP: @dststart points at one struct det_range the
 * snapshot leaves out: page-aligned, and private anonymous memory or
 * nothing throughout (EINVAL).  There the child's copy, and the reference
 * its merge compares against, read zeros, and the caller's pages stay its
 * own: neither side copies them when it writes there later.  For a range
 * only the caller will use until the merge.
 */
#define DET_SNAP_EXCEPT		0x00800000
/*
 * Op-flag of DET_SNAP: @dststart points at two struct det_range, the
 * range left out as with DET_SNAP_EXCEPT (size 0 for none; the flag need
 * not be set) and then the range handed to the child, which must not
 * overlap it and is checked the same way.  The child's copy holds the
 * caller's pages there as its own, and its snapshot reads zeros there,
 * so its merge takes back whatever it holds there then; the caller's
 * mapping there is emptied (it reads zeros until it writes or merges
 * there).  Neither side copies a page there: for a range only the child
 * will use until the merge.  If the range cannot be handed over, the
 * child is killed and the call fails.
 */
#define DET_SNAP_GIVE		0x00400000

/* After the operation, set the child running. */
#define DET_START		0x01000000

/* Status of a child, the non-negative return value of dput() and dget(). */
#define DET_S_READY		1 /* stopped by dret() or never started */
#define DET_S_RUNNING		2 /* running */
#define DET_S_EXCEPT		3 /* stopped by a fault or forbidden syscall */
#define DET_S_EXIT_NORMAL	4 /* called exit() or exit_group() */
#define DET_S_EXCEPT_DEAD	5 /* killed by a signal it could not stop on */

/* Why the child stopped, in struct det_status.reason. */
#define DET_R_NONE		0 /* running, or never started */
#define DET_R_DRET		1 /* it called dret() */
#define DET_R_SYSCALL		2 /* it attempted a forbidden system call */
#define DET_R_SIGNAL		3 /* a fault signal (SIGSEGV, SIGFPE, ...) */
#define DET_R_EXIT		4 /* it called exit() or exit_group() */
#define DET_R_KILLED		5 /* it died of a signal (e.g. OOM SIGKILL) */

/**
 * struct det_status - what dget(child, DET_GET_STATUS, &st, sizeof(st), 0)
 * writes.
 * @status:	DET_S_* value, also the return value of the call.
 * @reason:	DET_R_* value: why the child is stopped or dead.
 * @signo:	DET_R_SIGNAL: the fault signal; DET_R_KILLED: the fatal signal.
 * @code:	DET_R_SIGNAL: the signal's si_code.
 * @exit_code:	DET_R_EXIT: the exit status (0-255).
 * @__reserved:	zero.
 * @syscall_nr:	DET_R_SYSCALL: the system call number as passed in rax
 *		(all 64 bits, x32 bit included); -1 otherwise.
 * @addr:	DET_R_SIGNAL: the fault address (si_addr), if any.
 * @ip:		instruction pointer where the child stopped.
 */
struct det_status {
	__u32 status;
	__u32 reason;
	__s32 signo;
	__s32 code;
	__s32 exit_code;
	__u32 __reserved;
	__s64 syscall_nr;
	__u64 addr;
	__u64 ip;
};

/**
 * struct det_merge - what dget(child, DET_MERGE, start, size, report)
 * writes at @report.
 * @conflict_bytes:	bytes both sides changed, to different values.
 * @conflict_addr:	lowest conflicting address; 0 if none.
 * @conflict_start:	start of the first page with a conflict.
 * @conflict_end:	end of the last page with a conflict (exclusive).
 * @conflict_pages:	pages with at least one conflicting byte.
 * @scanned_pages:	pages of the range examined (page-table walk).
 * @copied_pages:	pages the child changed where the caller's bytes do
 *			not differ from the reference's: taken whole.
 * @compared_pages:	pages the child changed where the caller's bytes
 *			differ from the reference's too: merged byte by byte.
 *
 * Into a master, "changed" is by content, never by how pages happen to be
 * shared (a page rewritten with the same bytes, all-zero memory the
 * child's first write brought in, a range khugepaged collapsed are no
 * change), so the report is a function of the data alone.  Into a
 * deterministic caller, a page its logged child wrote since the snapshot
 * is a change whatever it wrote, and is not read to be counted: which
 * pages a deterministic child writes is a function of its inputs, so the
 * report is too (det-merge.7).
 */
struct det_merge {
	__u64 conflict_bytes;
	__u64 conflict_addr;
	__u64 conflict_start;
	__u64 conflict_end;
	__u64 conflict_pages;
	__u64 scanned_pages;
	__u64 copied_pages;
	__u64 compared_pages;
};

/**
 * struct det_range - one range of a DET_MERGE_ARGS merge, or the range a
 * DET_SNAP_EXCEPT snapshot leaves out (DET_SNAP_GIVE: and the one it
 * hands over).
 * @start:	first byte.
 * @size:	bytes.
 */
struct det_range {
	__u64 start;
	__u64 size;
};

/**
 * struct det_merge_args - what dget(child, DET_MERGE | DET_MERGE_ARGS,
 * &args, sizeof(args), 0) reads.  It may grow at its end: the kernel takes
 * a smaller struct than it knows (at least DET_MERGE_ARGS_SIZE_VER0 bytes)
 * with the fields past it 0, and a larger one whose extra bytes are 0
 * (else E2BIG).
 * @ranges:	user address of @nr_ranges struct det_range, in ascending
 *		order; no two may touch the same page (EINVAL).
 * @nr_ranges:	1 to DET_MERGE_MAX_RANGES.
 * @report:	user address of a struct det_merge, or 0.
 * @report_size: bytes at @report: the kernel writes the first
 *		min(@report_size, sizeof(struct det_merge)) bytes of its
 *		report and zeros the rest, so the report may grow too.
 *		Counts are totals over all ranges.  0 when @report is 0.
 */
struct det_merge_args {
	__u64 ranges;
	__u64 nr_ranges;
	__u64 report;
	__u64 report_size;
};

#define DET_MERGE_MAX_RANGES	64
#define DET_MERGE_ARGS_SIZE_VER0 32 /* the first struct det_merge_args */

/**
 * struct det_times - what a master's dget(0, DET_GET_TIMES, &t, sizeof(t), 0)
 * writes: the time its whole group (the master and every deterministic
 * process below it, past and present) spent in the memory operations of
 * dput() and dget(), in nanoseconds of the monotonic clock.  Only a master
 * may read it: a deterministic process never sees a clock.
 * @snap_ns:	creating children and DET_SNAP.
 * @merge_ns:	DET_MERGE.
 * @copy_ns:	DET_VM_COPY, DET_VM_ZERO and DET_PERM.
 * @kill_ns:	DET_KILL, until the child and its subtree are gone.
 * @calls:	the calls counted.
 */
struct det_times {
	__u64 snap_ns;
	__u64 merge_ns;
	__u64 copy_ns;
	__u64 kill_ns;
	__u64 calls;
};

#define DET_MERGE_SIZE		64 /* sizeof(struct det_merge) */
#define DET_TIMES_SIZE		40 /* sizeof(struct det_times) */
#define DET_STATUS_SIZE		48 /* sizeof(struct det_status) */
#define DET_GENERAL_REGS_SIZE	216 /* sizeof(struct user_regs_struct) */
#define DET_FP_REGS_SIZE	512 /* sizeof(struct user_fpregs_struct) */
/*
 * Fixed offsets in the DET_XSTATE_REGS buffer: it begins with the FXSAVE
 * image (as DET_FP_REGS), then the 64-byte XSAVE header (xfeatures at its
 * start); the AVX upper halves (YMM_Hi128, 16 x 16 bytes) follow at the
 * standard-format offset, CPUID(0xd, 2).ebx.  Other components: CPUID(0xd, i).
 */
#define DET_XSTATE_HDR_OFFSET	512
#define DET_XSTATE_YMM_OFFSET	576
/*
 * DET_ALLOW_SIGNALS takes the kernel's signal set, 8 bytes on x86_64, like
 * rt_sigprocmask()'s sigsetsize; a glibc sigset_t begins with it.
 */
#define DET_SIGSET_SIZE		8

#endif /* _UAPI_LINUX_DET_H */
