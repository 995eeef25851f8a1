// SPDX-License-Identifier: GPL-2.0-only
/*
 * Deterministic process groups: what the CPU tells a process without a
 * system call.
 *
 * - CPU number.  While a deterministic process runs, MSR_TSC_AUX (rdpid,
 *   rdtscp) and the limit of the per-CPU segment (lsl on __CPUNODE_SEG)
 *   read 0; the CPU's own value is written back when a legacy task or a
 *   master follows on that CPU.
 * - cpuid.  Where the CPU supports CPUID faulting (X86_FEATURE_CPUID_FAULT),
 *   a deterministic process runs with it on, and a faulting cpuid is
 *   answered with a fixed view (det_cpuid()) instead of the CPU's own:
 *   the same on every CPU of the machine and in every run, with RDRAND,
 *   RDSEED and every per-CPU field hidden.  Without CPUID faulting, cpuid
 *   runs natively (docs/kernel.md, "Known gaps").
 * - sgdt/sidt/smsw/sldt/str: UMIP (CONFIG_X86_UMIP) makes the kernel
 *   answer them with fixed values for every process.
 */

#include <linux/sched.h>
#include <linux/smp.h>
#include <linux/topology.h>
#include <linux/uaccess.h>
#include <asm/cpufeature.h>
#include <asm/processor.h>
#include <asm/segment.h>

#include "internal.h"

/* Called by det_fork() for a new deterministic process @p. */
void det_cpu_fork(struct task_struct *p)
{
	if (boot_cpu_has(X86_FEATURE_CPUID_FAULT))
		set_tsk_thread_flag(p, TIF_NOCPUID);
}

/*
 * Hook from __switch_to_xtra(), interrupts off: give this CPU a fixed
 * getcpu value while a deterministic process runs on it.
 */
void __det_switch(struct task_struct *prev, struct task_struct *next)
{
	bool in = det_is_child(next);
	int cpu;

	if (in == det_is_child(prev))
		return;
	cpu = smp_processor_id();
	write_getcpu_data(cpu, in ? 0 : vdso_encode_cpunode(cpu, cpu_to_node(cpu)));
}

#define DET_CPUID_MAX		0xdU
#define DET_CPUID_EXT_MAX	0x80000008U

/* Bits hidden from the CPU's own values. */
#define DET_CPUID1_EBX_APICID	GENMASK(31, 24)
#define DET_CPUID1_ECX_RDRAND	BIT(30)
#define DET_CPUID7_EBX_RDSEED	BIT(18)

/*
 * The fixed CPUID view of a deterministic process.  Leaves 0x0, 0x1, 0x7,
 * 0xd (feature flags and XSAVE layout) and 0x80000000-0x80000008 come from
 * the CPU, the maximum leaves capped to that set, with leaf 1's initial
 * APIC ID zeroed and RDRAND (1.ecx[30]) and RDSEED (7.0.ebx[18]) cleared.
 * Every other leaf -- caches, topology and x2APIC IDs (0x4, 0xb, 0x1f),
 * hybrid core type (0x1a), hypervisor leaves, AMD's extended APIC ID
 * (0x8000001e) -- reads as zero.
 */
static bool det_cpuid_leaf_shown(u32 leaf)
{
	if (leaf >= 0x80000000U)
		return leaf <= DET_CPUID_EXT_MAX;
	return leaf <= 0x1 || leaf == 0x7 || leaf == DET_CPUID_MAX;
}

static void det_cpuid(u32 leaf, u32 sub, u32 *a, u32 *b, u32 *c, u32 *d)
{
	*a = *b = *c = *d = 0;
	if (!det_cpuid_leaf_shown(leaf))
		return;
	cpuid_count(leaf, sub, a, b, c, d);
	switch (leaf) {
	case 0x0:
		*a = min(*a, DET_CPUID_MAX);
		break;
	case 0x1:
		*b &= ~DET_CPUID1_EBX_APICID;
		*c &= ~DET_CPUID1_ECX_RDRAND;
		break;
	case 0x7:
		if (!sub)
			*b &= ~DET_CPUID7_EBX_RDSEED;
		break;
	case 0x80000000U:
		*a = min(*a, DET_CPUID_EXT_MAX);
		break;
	}
}

/**
 * det_emulate_cpuid - answer a cpuid that faulted in a deterministic process
 * @regs:	user registers at the #GP
 *
 * Return: true if the faulting instruction was cpuid (0f a2) in a
 * deterministic process running with CPUID faulting: @regs then hold the
 * fixed view's answer and point past the instruction.  False otherwise,
 * and the #GP takes its usual course (a SIGSEGV stop).
 */
bool det_emulate_cpuid(struct pt_regs *regs)
{
	u8 insn[2];
	u32 a, b, c, d;

	if (!det_is_child(current) || !test_thread_flag(TIF_NOCPUID))
		return false;
	if (copy_from_user(insn, (void __user *)regs->ip, sizeof(insn)) ||
	    insn[0] != 0x0f || insn[1] != 0xa2)
		return false;
	det_cpuid(regs->ax, regs->cx, &a, &b, &c, &d);
	regs->ax = a;
	regs->bx = b;
	regs->cx = c;
	regs->dx = d;
	regs->ip += sizeof(insn);
	return true;
}
