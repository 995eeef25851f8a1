// SPDX-License-Identifier: GPL-2.0
/*
 * Legacy processes are unaffected: an ordinary multithreaded program runs
 * alongside a busy deterministic process group and keeps every ability the
 * group lacks -- threads, fork, signals, rdtsc, the vDSO clock, ptrace.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sys/auxv.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <x86intrin.h>

#include "det_test.h"

#define THREADS 4
#define ROUNDS 2000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long total;
static volatile sig_atomic_t got_usr1;

static void on_usr1(int sig)
{
	(void)sig;
	got_usr1++;
}

static void *worker(void *arg)
{
	unsigned long id = (unsigned long)arg, i, local = 0, t0, t1;
	struct timespec ts;

	for (i = 0; i < ROUNDS; i++) {
		local += i * (id + 1);
		if (i % 256 == 0) {
			pthread_mutex_lock(&lock);
			total += local;
			local = 0;
			pthread_mutex_unlock(&lock);
			sched_yield();
		}
	}
	pthread_mutex_lock(&lock);
	total += local;
	pthread_mutex_unlock(&lock);
	t0 = __rdtsc();
	if (clock_gettime(CLOCK_MONOTONIC, &ts))
		return (void *)1;
	t1 = __rdtsc();
	return (void *)(t1 >= t0 ? 0UL : 2UL);
}

/* A master keeps creating, faulting and killing children meanwhile. */
static void __attribute__((noreturn)) busy_master(int ready_fd, int stop_fd)
{
	long i = 0, r;
	char c = 'r';

	if (become_master())
		_exit(1);
	if (write(ready_fd, &c, 1) != 1)
		_exit(2);
	for (;;) {
		r = dput(1, DET_START, 0, 0, 0);
		if (r == 0) {
			if (i & 1)
				det_raw5(__NR_getpid, 0, 0, 0, 0, 0);
			__rdtsc();
			det_exit(0);
		}
		if (dget(1, 0, 0, 0, 0) != DET_S_EXCEPT)
			_exit(3);
		if (dput(1, DET_KILL, 0, 0, 0))
			_exit(4);
		i++;
		if (read(stop_fd, &c, 1) == 1)
			_exit(0);
	}
}

TEST(threads_alongside_a_det_group)
{
	int ready[2], stop[2], status, i;
	unsigned long expect = 0, k;
	pthread_t th[THREADS];
	struct sigaction sa = { 0 };
	pid_t m, child;
	void *ret;
	char c;

	ASSERT_EQ(0, pipe(ready));
	ASSERT_EQ(0, pipe(stop));
	m = fork();
	ASSERT_LE(0, m);
	if (m == 0) {
		close(stop[1]);
		if (fcntl(stop[0], F_SETFL, O_NONBLOCK))
			_exit(5);
		busy_master(ready[1], stop[0]);
	}
	ASSERT_EQ(1, read(ready[0], &c, 1));

	for (i = 0; i < THREADS; i++)
		ASSERT_EQ(0, pthread_create(&th[i], NULL, worker,
					    (void *)(unsigned long)i));
	for (i = 0; i < THREADS; i++) {
		ASSERT_EQ(0, pthread_join(th[i], &ret));
		EXPECT_EQ(NULL, ret);
		for (k = 0; k < ROUNDS; k++)
			expect += k * (i + 1);
	}
	EXPECT_EQ(expect, total);

	/* Signals, fork, ptrace and the vDSO work as usual here. */
	sa.sa_handler = on_usr1;
	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
	ASSERT_EQ(0, kill(getpid(), SIGUSR1));
	EXPECT_EQ(1, got_usr1);
	child = fork();
	ASSERT_LE(0, child);
	if (child == 0) {
		pause();
		_exit(0);
	}
	EXPECT_EQ(0, ptrace(PTRACE_ATTACH, child, 0, 0));
	EXPECT_EQ(child, waitpid(child, &status, 0));
	EXPECT_EQ(0, ptrace(PTRACE_DETACH, child, 0, 0));
	EXPECT_EQ(0, kill(child, SIGKILL));
	EXPECT_EQ(child, waitpid(child, &status, 0));
	EXPECT_NE(0, getauxval(AT_SYSINFO_EHDR));

	ASSERT_EQ(1, write(stop[1], "s", 1));
	ASSERT_EQ(m, waitpid(m, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

TEST_HARNESS_MAIN
