// SPDX-License-Identifier: GPL-2.0
/*
 * Port of a v3.0-det DET_REGS program (libdeterm's user/regs.c behaviour,
 * our own code): a child faults (an integer division by zero); its parent
 * polls the status through dput(DET_GET_STATUS), reads the registers with
 * DET_REGS and size 0, as the original library did, and restarts the child
 * at a function of its choice with registers it built; the child reports
 * the register it was given through its memory.  What changed for
 * detlinux: the child cannot print (it would stop), and a faulted child is
 * destroyed by one DET_KILL (docs/kernel.md, "Porting from v3.0-det").
 */
#include <sys/user.h>

#include "det_test.h"

#define MAGIC 0x5eed1234abcdUL

static volatile unsigned long seen_r15;
static unsigned char stack[16 * 4096] __attribute__((aligned(16)));

static void __attribute__((noreturn, used)) restarted(void)
{
	unsigned long r15;

	__asm__ volatile ("mov %%r15, %0" : "=r"(r15));
	seen_r15 = r15;
	dret();
	det_exit(7);
}

static void divide_by_zero(void)
{
	unsigned long q = 1, zero = 0;

	__asm__ volatile ("xor %%edx, %%edx; divq %1"
			  : "+a"(q) : "r"(zero) : "rdx");
}

TEST(fault_inspect_restart)
{
	struct user_regs_struct regs;
	struct det_status st;
	unsigned long got = 0;
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(0, DET_START, 0, 0, 0);
	if (r == 0) {
		divide_by_zero();
		det_exit(1);	/* not reached: the fault stops it */
	}
	ASSERT_EQ(DET_S_RUNNING, r);
	ASSERT_EQ(DET_S_EXCEPT, dget(0, 0, 0, 0, 0));
	EXPECT_EQ(DET_S_EXCEPT, dput(0, DET_GET_STATUS, (unsigned long)&st,
				     sizeof(st), 0));
	EXPECT_EQ(DET_R_SIGNAL, st.reason);
	EXPECT_EQ(SIGFPE, st.signo);
	memset(&regs, 0, sizeof(regs));
	ASSERT_EQ(DET_S_EXCEPT, dget(0, DET_REGS | DET_GENERAL_REGS,
				     (unsigned long)&regs, 0, 0));
	EXPECT_EQ(st.ip, regs.rip);
	EXPECT_EQ(0, regs.rdx);

	/* Restart it at restarted() on its own stack, r15 = MAGIC. */
	regs.rip = (unsigned long)restarted;
	regs.rsp = (unsigned long)(stack + sizeof(stack)) - 8;
	regs.r15 = MAGIC;
	ASSERT_EQ(DET_S_RUNNING, dput(0, DET_REGS | DET_GENERAL_REGS |
				      DET_START, (unsigned long)&regs, 0, 0));
	ASSERT_EQ(DET_S_READY, det_read_child(0, &seen_r15, &got,
					      sizeof(got)));
	EXPECT_EQ(MAGIC, got);
	EXPECT_EQ(0, seen_r15);	/* the parent's own copy is untouched */
	ASSERT_EQ(DET_S_RUNNING, dput(0, DET_START, 0, 0, 0));
	ASSERT_EQ(DET_S_EXIT_NORMAL, dput(0, DET_GET_STATUS, (unsigned long)&st,
					  sizeof(st), 0));
	EXPECT_EQ(7, st.exit_code);
	EXPECT_EQ(0, dput(0, DET_KILL, 0, 0, 0));
}

/* A faulted child goes with one DET_KILL (v3.0-det needed the poison). */
TEST(kill_faulted_child)
{
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(0, DET_START, 0, 0, 0);
	if (r == 0) {
		divide_by_zero();
		det_exit(1);
	}
	ASSERT_EQ(DET_S_EXCEPT, dget(0, DET_GET_STATUS, 0, 0, 0));
	EXPECT_EQ(0, dput(0, DET_KILL, 0, 0, 0));
	EXPECT_EQ(-ESRCH, dget(0, DET_GET_STATUS, 0, 0, 0));
}

TEST_HARNESS_MAIN
