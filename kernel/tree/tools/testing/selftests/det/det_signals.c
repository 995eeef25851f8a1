// SPDX-License-Identifier: GPL-2.0
/*
 * Signals: no user signal reaches a deterministic process (SIGKILL and
 * SIGSTOP included, through every sending interface), nothing can ptrace
 * it, and a master's waits are ended only by the signals it allowed (or
 * SIGKILL).  A killed master does not hang.
 */
#include <fcntl.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

#include "det_test.h"

#define N_RUNNING 4
#define N_STOPPED 2
#define N_DET (N_RUNNING + N_STOPPED)

static volatile sig_atomic_t usr1, usr2;

static void on_usr1(int sig)
{
	(void)sig;
	usr1++;
}

static void on_usr2(int sig)
{
	(void)sig;
	usr2++;
}

/*
 * The master: children 0..N_RUNNING-1 spin, the rest stay stopped.  Reports
 * problems as bits of its exit status.
 */
static int __attribute__((noreturn)) master(int ready_fd, int go_fd)
{
	struct sigaction sa = { 0 };
	unsigned long allow = 1UL << (SIGUSR1 - 1);
	int bad = 0;
	long i, r;
	char c = 'r';

	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGWINCH, &sa, NULL);

	if (become_master())
		_exit(100);
	if (dput(0, DET_ALLOW_SIGNALS, (unsigned long)&allow,
		 DET_SIGSET_SIZE, 0))
		_exit(101);
	for (i = 0; i < N_DET; i++) {
		r = dput(i, i < N_RUNNING ? DET_START : 0, 0, 0, 0);
		if (r == 0)
			for (;;)
				;
		if (r < 0)
			_exit(102);
	}
	if (write(ready_fd, &c, 1) != 1)
		_exit(103);

	/* Blocks: child 0 spins.  Only SIGUSR1 may end the wait. */
	r = dget(0, 0, 0, 0, 0);
	if (r != -EINTR)
		bad |= 1;
	if (usr1 != 1)
		bad |= 2;
	/* SIGUSR2 was held back during the wait, delivered after it. */
	if (usr2 < 1)
		bad |= 4;
	if (read(go_fd, &c, 1) != 1)
		bad |= 8;

	for (i = 0; i < N_DET; i++) {
		r = dget(i, DET_GET_STATUS | DET_DONT_WAIT, 0, 0, 0);
		if (r != (i < N_RUNNING ? DET_S_RUNNING : DET_S_READY))
			bad |= 16;
		if (dput(i, DET_KILL | DET_KILL_POISON, 0, 0, 0))
			bad |= 32;
	}
	_exit(bad);
}

static int try_all_senders(pid_t pid, int sig)
{
	union sigval v = { .sival_int = 1 };
	int refused = 0, pidfd;

	errno = 0;
	refused += kill(pid, sig) == -1 && errno == EPERM;
	errno = 0;
	refused += syscall(SYS_tgkill, pid, pid, sig) == -1 && errno == EPERM;
	errno = 0;
	refused += sigqueue(pid, sig, v) == -1 && errno == EPERM;
	pidfd = syscall(SYS_pidfd_open, pid, 0);
	if (pidfd >= 0) {
		errno = 0;
		refused += syscall(SYS_pidfd_send_signal, pidfd, sig, NULL,
				   0) == -1 && errno == EPERM;
		close(pidfd);
	}
	return refused;
}

TEST(flood_refused_allowed_reaches_master)
{
	static const int sigs[] = { SIGKILL, SIGSTOP, SIGTERM, SIGINT,
				    SIGSEGV, SIGUSR1, SIGCONT, SIGALRM };
	int ready[2], go[2], status, n, i, j, round, refused = 0, tries = 0;
	pid_t m, det[N_DET + 2];
	char c;

	ASSERT_EQ(0, pipe(ready));
	ASSERT_EQ(0, pipe(go));
	m = fork();
	ASSERT_LE(0, m);
	if (m == 0) {
		setpgid(0, 0);
		master(ready[1], go[0]);
	}
	setpgid(m, m);
	ASSERT_EQ(1, read(ready[0], &c, 1));
	n = children_of(m, det, N_DET + 2);
	ASSERT_EQ(N_DET, n);

	for (round = 0; round < 50; round++)
		for (i = 0; i < n; i++)
			for (j = 0; j < (int)ARRAY_SIZE(sigs); j++) {
				refused += try_all_senders(det[i], sigs[j]);
				tries += 4;
			}
	EXPECT_EQ(tries, refused);
	/* The process group: the det children are skipped. */
	EXPECT_EQ(0, kill(-m, SIGWINCH));
	EXPECT_EQ(0, kill(-m, SIGCONT));
	/* ptrace and /proc introspection are refused too. */
	for (i = 0; i < n; i++) {
		char path[64];

		errno = 0;
		EXPECT_EQ(-1, ptrace(PTRACE_ATTACH, det[i], 0, 0));
		EXPECT_EQ(EPERM, errno);
		errno = 0;
		EXPECT_EQ(-1, ptrace(PTRACE_SEIZE, det[i], 0, 0));
		EXPECT_EQ(EPERM, errno);
		snprintf(path, sizeof(path), "/proc/%d/mem", det[i]);
		EXPECT_EQ(-1, open(path, O_RDONLY));
	}
	/* All still there. */
	EXPECT_EQ(N_DET, count_children_of(m));

	/* A stop/continue of the master does not end its wait... */
	EXPECT_EQ(0, kill(m, SIGSTOP));
	usleep(100000);
	EXPECT_EQ(0, kill(m, SIGCONT));
	/* ...nor does a signal it did not allow... */
	EXPECT_EQ(0, kill(m, SIGUSR2));
	usleep(200000);
	/* ...but the allowed one does. */
	EXPECT_EQ(0, kill(m, SIGUSR1));
	ASSERT_EQ(1, write(go[1], "g", 1));
	ASSERT_EQ(m, waitpid(m, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	printf("# %d signals sent at deterministic processes, %d refused\n",
	       tries, refused);
}

/* A master blocked in dget() is killable, and its children go with it. */
TEST(master_killed_while_waiting)
{
	int ready[2], status, n, i;
	pid_t m, det[8];
	double t0;
	char c;

	ASSERT_EQ(0, pipe(ready));
	m = fork();
	ASSERT_LE(0, m);
	if (m == 0) {
		long r;

		if (become_master())
			_exit(1);
		for (i = 0; i < 4; i++) {
			r = dput(i, DET_START, 0, 0, 0);
			if (r == 0)
				for (;;)
					;
		}
		if (write(ready[1], "r", 1) != 1)
			_exit(2);
		dget(0, 0, 0, 0, 0);
		_exit(3);
	}
	ASSERT_EQ(1, read(ready[0], &c, 1));
	n = children_of(m, det, 8);
	ASSERT_EQ(4, n);
	usleep(100000);
	t0 = now_us();
	ASSERT_EQ(0, kill(m, SIGKILL));
	ASSERT_EQ(m, waitpid(m, &status, 0));
	printf("# master with 4 running children killed and reaped in %.0f us\n",
	       now_us() - t0);
	ASSERT_TRUE(WIFSIGNALED(status));
	EXPECT_EQ(SIGKILL, WTERMSIG(status));
	for (i = 0; i < n; i++) {
		char path[64];

		snprintf(path, sizeof(path), "/proc/%d", det[i]);
		EXPECT_NE(0, access(path, F_OK));
	}
}

TEST_HARNESS_MAIN
