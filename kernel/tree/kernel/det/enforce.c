// SPDX-License-Identifier: GPL-2.0-only
/*
 * Deterministic process groups: enforcement.
 *
 * A deterministic process may make exactly five system calls: dput, dget,
 * dret, exit and exit_group.  Any other number -- in or past the table,
 * with the x32 bit, or from a 32-bit entry -- stops it before the call is
 * dispatched, as an implicit dret() with status DET_S_EXCEPT; the parent
 * reads the number from struct det_status and may emulate the call by
 * setting rax with DET_REGS before starting the child again.  Left alone,
 * the call returns -ENOSYS.
 *
 * The time stamp counter is disabled for it (TIF_NOTSC, CR4.TSD), so
 * rdtsc/rdtscp fault, and the vDSO and vvar pages, which expose the
 * kernel's clock, are unmapped before it first runs and after each
 * DET_SNAP, together with every shared or device mapping: touching them
 * faults.
 */

#include <linux/compat.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/hugetlb.h>
#include <linux/mm.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/shmem_fs.h>
#include <linux/syscalls.h>
#include <asm/mmu_context.h>
#include <asm/syscall.h>

#include "internal.h"

static bool det_syscall_allowed(long nr)
{
	if (in_compat_syscall())
		return false;
	switch (nr) {
	case __NR_dput:
	case __NR_dget:
	case __NR_dret:
	case __NR_exit:
	case __NR_exit_group:
		return true;
	}
	return false;
}

/*
 * Hook from syscall_trace_enter() for tasks with SYSCALL_WORK_DET.  Returns
 * nonzero if the system call must be skipped.
 */
long det_syscall_enter(struct pt_regs *regs, long nr)
{
	struct det_proc *me = current->det;

	if (WARN_ON_ONCE(!me) || det_syscall_allowed(nr))
		return 0;

	syscall_set_return_value(current, regs, -ENOSYS, 0);
	det_stop(me, DET_S_EXCEPT, DET_R_SYSCALL, 0, 0, 0, regs->orig_ax);
	return 1;
}

/*
 * Is @vma a mapping whose pages someone other than the process and its
 * parent's dput() can change or read time from?  The vDSO text and its
 * data pages ([vvar], [vvar_vclock]), and every shared or device mapping:
 * MAP_SHARED files, memfd and shared anonymous memory, SysV shm, the AIO
 * completion ring the kernel writes, PFN/IO mappings of drivers.
 */
static bool det_vma_outside(struct vm_area_struct *vma)
{
	const char *name;

	if (vma->vm_flags & (VM_MAYSHARE | VM_IO | VM_PFNMAP | VM_MIXEDMAP))
		return true;
	/*
	 * A private mapping of a device or other special file, or of
	 * hugetlbfs: det_privatize_vma() cannot copy them.
	 */
	if (vma->vm_file && !vma_is_anonymous(vma) &&
	    (!S_ISREG(file_inode(vma->vm_file)->i_mode) ||
	     is_vm_hugetlb_page(vma)))
		return true;
	if (!vma->vm_ops || !vma->vm_ops->name)
		return false;
	name = vma->vm_ops->name(vma);
	return name && (!strcmp(name, "[vdso]") || !strncmp(name, "[vvar", 5));
}

/*
 * The first such mapping of @mm, found by what it is rather than where
 * mm->context says the vDSO is (the master may have mremap()ed it).
 * Returns -ENOENT if there is none, -EPERM if it is sealed.
 */
static int det_find_outside(struct mm_struct *mm, unsigned long *start,
			    unsigned long *end)
{
	VMA_ITERATOR(vmi, mm, 0);
	struct vm_area_struct *vma;
	int ret = -ENOENT;

	mmap_read_lock(mm);
	for_each_vma(vmi, vma) {
		if (!det_vma_outside(vma))
			continue;
		*start = vma->vm_start;
		*end = vma->vm_end;
		ret = vma->vm_flags & VM_SEALED ? -EPERM : 0;
		break;
	}
	mmap_read_unlock(mm);
	return ret;
}

/**
 * det_check_outside - can a copy of @mm lose what others can change?
 * @mm:	the address space a new child or a DET_SNAP copies
 *
 * Return: 0, or -EPERM if a vDSO, vvar, shared or device mapping of @mm
 * is sealed (mseal()): a copy could not unmap it.
 */
int det_check_outside(struct mm_struct *mm)
{
	VMA_ITERATOR(vmi, mm, 0);
	struct vm_area_struct *vma;
	int ret = 0;

	mmap_read_lock(mm);
	for_each_vma(vmi, vma)
		if (det_vma_outside(vma) && (vma->vm_flags & VM_SEALED))
			ret = -EPERM;
	mmap_read_unlock(mm);
	return ret;
}

/*
 * The copy of a master's address space carries its rdpmc permission (the
 * count of its mmap()ed perf events, whose mappings are not copied): drop
 * it, and CR4.PCE with it, so rdpmc faults in the child.
 */
static void det_drop_rdpmc(struct mm_struct *mm)
{
#ifdef CONFIG_PERF_EVENTS
	if (!atomic_read(&mm->context.perf_rdpmc_allowed))
		return;
	atomic_set(&mm->context.perf_rdpmc_allowed, 0);
	local_irq_disable();
	cr4_update_pce(NULL);
	local_irq_enable();
#endif
}

/*
 * Is @vma a private mapping of a regular file?  The pages it has not
 * written are the file's page cache: another process's write() changes
 * them, an ftruncate() turns a read into SIGBUS, and even the pages it
 * wrote are unmapped by a truncation (they are the file's, past its end).
 */
static bool det_vma_file_private(struct vm_area_struct *vma)
{
	return vma->vm_file && !vma_is_anonymous(vma) &&
	       !(vma->vm_flags & VM_MAYSHARE);
}

/*
 * Can the file behind @vma, a private file mapping, change while its mm
 * exists?  Not if it is the mm's own executable @exe and lives in memory
 * only (tmpfs): the mm denies write access to its executable for as long
 * as it has it (dup_mm_exe_file()), so no write() or truncation reaches
 * the file, and no disk or server stands behind its page cache.  Its
 * pages need no copy: a program's text and data stay shared with the
 * page cache, as after fork().
 */
static bool det_file_fixed(struct file *exe, struct vm_area_struct *vma)
{
	return exe && file_inode(exe) == file_inode(vma->vm_file) &&
	       !FMODE_FSNOTIFY_HSM(exe->f_mode) &&
	       shmem_mapping(vma->vm_file->f_mapping);
}

/*
 * Make the private file mapping @vma of @mm anonymous memory holding what
 * it shows now.  Every page is given a private copy, as a write would (a
 * page past the end of the file, which cannot be read, stays unpopulated
 * and reads as zeros from now on); then the mapping forgets its file, so
 * that neither writes nor truncation of the file reach it again.  Caller
 * holds the mmap lock for writing; @mm is a deterministic child's (or
 * about to be), which is not running in user space.
 */
static int det_privatize_vma(struct mm_struct *mm, struct vm_area_struct *vma)
{
	struct file *file = vma->vm_file;
	struct address_space *mapping = file->f_mapping;
	unsigned long addr = vma->vm_start;
	long got;

	mmap_assert_write_locked(mm);
	while (addr < vma->vm_end) {
		if (fatal_signal_pending(current))
			return -EINTR;
		got = get_user_pages_remote(mm, addr,
					    (vma->vm_end - addr) >> PAGE_SHIFT,
					    FOLL_WRITE | FOLL_FORCE, NULL, NULL);
		if (got == -ENOMEM || got == -EINTR)
			return got;
		/* Not readable (past the end of the file): leave it empty. */
		addr += (got > 0 ? got : 1) << PAGE_SHIFT;
		cond_resched();
	}
	vma_start_write(vma);
	i_mmap_lock_write(mapping);
	vma_interval_tree_remove(vma, &mapping->i_mmap);
	i_mmap_unlock_write(mapping);
	if (vma->vm_ops && vma->vm_ops->close)
		vma->vm_ops->close(vma);
	vma->vm_file = NULL;
	vma_set_anonymous(vma);
	fput(file);
	return 0;
}

/**
 * det_privatize_files - make a child's private file mappings its own
 * @mm: the address space of a new child, or of one about to replace a
 *	child's by DET_SNAP, which no task runs in user space.
 *
 * The parent calls it, so that the child holds what its mappings showed
 * when dput() created or snapshotted it, not what the files hold by the
 * time the child first runs.  Mappings of a file that cannot change while
 * the child lives (det_file_fixed()) stay as they are.
 *
 * Return: 0, -EINTR if the caller is being killed, -ENOMEM.
 */
int det_privatize_files(struct mm_struct *mm)
{
	VMA_ITERATOR(vmi, mm, 0);
	struct vm_area_struct *vma;
	struct file *exe;
	int ret = 0;

	if (mmap_write_lock_killable(mm))
		return -EINTR;
	exe = get_mm_exe_file(mm);
	for_each_vma(vmi, vma) {
		if (!det_vma_file_private(vma) || det_file_fixed(exe, vma))
			continue;
		ret = det_privatize_vma(mm, vma);
		if (ret)
			break;
	}
	mmap_write_unlock(mm);
	if (exe)
		fput(exe);
	return ret;
}

/*
 * Unmap, in the current (new or just snapshotted, not running)
 * deterministic process, every mapping that det_vma_outside() names: the
 * kernel's clock, and pages another process or the kernel can write.
 * Touching their addresses is then a SIGSEGV stop.  The parent checked
 * none is sealed (det_check_outside()); if one cannot be unmapped all the
 * same, the process dies rather than run with it.
 */
void det_drop_outside(void)
{
	struct mm_struct *mm = current->mm;
	unsigned long start, end;
	int ret;

	while (!(ret = det_find_outside(mm, &start, &end))) {
		ret = vm_munmap(start, end - start);
		if (ret)
			break;
	}
	/* The parent already did it (det_create(), det_snap()): a check. */
	if (ret == -ENOENT)
		ret = det_privatize_files(mm);
	if (ret) {
		send_sig_info(SIGKILL, SEND_SIG_PRIV, current);
		return;
	}
	mm->context.vdso = NULL;
	mm->context.vdso_image = NULL;
	det_drop_rdpmc(mm);
}

/*
 * Hook from syscall_exit_work() for tasks with SYSCALL_WORK_DET: a process
 * just created by dput() drops its clock pages and parks, stopped, before
 * it ever runs in user space.
 */
void det_syscall_exit(struct pt_regs *regs)
{
	struct det_proc *me = current->det;

	if (WARN_ON_ONCE(!me) || likely(!me->fresh))
		return;
	me->fresh = false;
	det_drop_outside();
	det_park(me);
}
