// SPDX-License-Identifier: GPL-2.0
/*
 * Memory-operation microbenchmark (not a test: it reports, it does not
 * judge).  All figures come from one run in one process:
 *
 *   merge_per_dirty_mib / memcpy_per_mib  merging pages only the child
 *                                         wrote vs memcpy of the same bytes
 *   merge of a clean range                cost per scanned page, for growing
 *                                         ranges of populated memory
 *   snapshot / fork                       DET_SNAP (new child, and on an
 *                                         existing one) vs fork() of the
 *                                         same process
 *   merge of 1 dirty page, 1 GiB / 1 MiB  whether a merge's cost follows the
 *                                         size of the range it is given
 *   libdeterm fork + join / fork()        a deterministic program's fork and
 *                                         join of a child writing k pages
 *                                         (userland/det-progs forkbench, run
 *                                         by detrun) vs fork() + the same
 *                                         writes + exit + waitpid here
 *   write faults, per page                what isolation by copy-on-write
 *                                         costs any process here: a first
 *                                         write after fork() (a copy) and
 *                                         after its child is gone (the page
 *                                         is reused), beside memcpy of a page
 *
 * Output: one "name value unit" line per figure, then the ratios.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../det_util.h"

#define PG 4096UL
#define REPS 5

static unsigned char *map(size_t size)
{
	unsigned char *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

static void touch(unsigned char *p, size_t size, unsigned char v)
{
	size_t i;

	for (i = 0; i < size; i += PG)
		p[i] = v;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return v[n / 2];
}

static void check(long r, long want, const char *what)
{
	if (r != want) {
		fprintf(stderr, "det_membench: %s returned %ld\n", what, r);
		exit(1);
	}
}

/* Child @id: snapshot of the caller that memsets [buf, +size) to @v. */
static void dirty_child(unsigned long id, unsigned char *buf, size_t size,
			int v)
{
	long r = dput(id, DET_SNAP | DET_START, 0, 0, 0);

	if (r == 0) {
		if (v >= 0)
			memset(buf, v, size);
		dret();
		det_exit(0);
	}
	check(r, DET_S_RUNNING, "dput(SNAP|START)");
	check(dget(id, 0, 0, 0, 0), DET_S_READY, "dget");
}

static double time_merge(unsigned long id, unsigned char *buf, size_t size,
			 struct det_merge *rep)
{
	double t0 = now_us();

	check(dget(id, DET_MERGE, (unsigned long)buf, size,
		   (unsigned long)rep), DET_S_READY, "dget(MERGE)");
	return now_us() - t0;
}

/* Wall time of one run of `detrun forkbench pages cycles`, in us. */
static double run_forkbench(unsigned long pages, unsigned long cycles)
{
	char p[32], c[32];
	double t0 = now_us();
	int status;
	pid_t pid;

	snprintf(p, sizeof(p), "%lu", pages);
	snprintf(c, sizeof(c), "%lu", cycles);
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (null >= 0)
			dup2(null, 1);
		execl("/usr/bin/detrun", "detrun",
		      "/usr/lib/detlinux/det-progs/forkbench", p, c, (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid ||
	    !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "det_membench: forkbench %lu %lu failed\n",
			pages, cycles);
		exit(1);
	}
	return now_us() - t0;
}

/*
 * Per cycle: libdeterm's fork + join of a child writing @pages pages, and
 * fork() + the same writes + _exit + waitpid of this process, whose heap
 * is laid out as detrun's (a 512 MiB private mapping, the block in it).
 */
static void forkjoin(unsigned long pages, unsigned long cycles)
{
	unsigned char *heap = map(512UL << 20), *blk = heap + (1UL << 20);
	double t[REPS], det_us, fork_us, t0;
	unsigned long n, i;
	unsigned int k;
	pid_t pid;

	touch(heap, (1UL << 20) + pages * PG, 1);
	for (k = 0; k < REPS; k++) {
		t0 = now_us();
		for (n = 0; n < cycles; n++) {
			pid = fork();
			if (pid == 0) {
				for (i = 0; i < pages; i++)
					blk[i * PG] = n + 2;
				_exit(0);
			}
			waitpid(pid, NULL, 0);
		}
		t[k] = (now_us() - t0) / cycles;
	}
	fork_us = median(t, REPS);
	for (k = 0; k < REPS; k++)
		t[k] = (run_forkbench(pages, cycles) - run_forkbench(pages, 0)) /
		       cycles;
	det_us = median(t, REPS);
	munmap(heap, 512UL << 20);
	printf("forkjoin_%lu_pages_us %.1f (fork+waitpid %.1f)\n", pages,
	       det_us, fork_us);
	printf("ratio forkjoin_%lu_pages/fork %.2f (goal <= 1.5)\n", pages,
	       det_us / fork_us);
}

/*
 * Microseconds per page of one pass writing a byte to each page of the
 * @pages at @p, less a pass that takes no fault: after fork(), with the
 * child waiting (@copy: every write copies the page), or with the child
 * gone (the page is this process's alone again, and reused).
 */
static double write_fault_us(unsigned char *p, size_t pages, int copy)
{
	double t[REPS], t0, bare;
	int fd[2], k;
	char c = 0;
	pid_t pid;

	for (k = 0; k < REPS; k++) {
		touch(p, pages * PG, 1);
		t0 = now_us();
		touch(p, pages * PG, 2);
		bare = now_us() - t0;
		/* A copying child waits on the pipe until the pass is done. */
		if (copy && pipe(fd))
			check(-1, 0, "pipe");
		pid = fork();
		if (pid == 0)
			_exit(copy && read(fd[0], &c, 1) < 0);
		if (pid < 0)
			check(pid, 0, "fork");
		if (!copy)
			waitpid(pid, NULL, 0);
		t0 = now_us();
		touch(p, pages * PG, 3);
		t[k] = (now_us() - t0 - bare) / pages;
		if (copy) {
			check(write(fd[1], &c, 1), 1, "write");
			waitpid(pid, NULL, 0);
			close(fd[0]);
			close(fd[1]);
		}
	}
	return median(t, REPS);
}

int main(void)
{
	const size_t dirty = 32UL << 20, fork_mem = 64UL << 20;
	static const size_t clean[] = { 16UL << 20, 64UL << 20, 256UL << 20 };
	unsigned char *a = map(dirty), *b = map(dirty), *big, *mem;
	double t[REPS], memcpy_us, merge_us, both_us, fork_us, snap_us;
	double resnap_us, t0, sparse_us[2];
	struct det_merge rep;
	unsigned int i, k;
	pid_t pid;

	printf("# det_membench: 2 vCPUs as booted; medians of %d runs\n", REPS);

	/* First, while this process is small and not yet a master. */
	forkjoin(1, 40);
	forkjoin(64, 40);
	forkjoin(4096, 8);

	/* fork() of this process, with fork_mem of populated memory. */
	mem = map(fork_mem);
	touch(mem, fork_mem, 1);
	touch(a, dirty, 1);
	touch(b, dirty, 2);
	for (k = 0; k < REPS; k++) {
		t0 = now_us();
		pid = fork();
		if (pid == 0)
			_exit(0);
		t[k] = now_us() - t0;
		waitpid(pid, NULL, 0);
	}
	fork_us = median(t, REPS);

	/* What a write fault costs here, on 4096 pages of the fork's. */
	printf("write_fault_copy_us_per_page %.2f\n",
	       write_fault_us(mem, 4096, 1));
	printf("write_fault_reuse_us_per_page %.2f\n",
	       write_fault_us(mem, 4096, 0));

	/* memcpy of the dirty size, both buffers populated. */
	for (k = 0; k < REPS; k++) {
		t0 = now_us();
		memcpy(b, a, dirty);
		t[k] = now_us() - t0;
	}
	memcpy_us = median(t, REPS);

	check(dput(0, DET_BECOME_MASTER, 0, 0, 0), 0, "DET_BECOME_MASTER");

	/* DET_SNAP creating a child: fork plus the reference copy. */
	for (k = 0; k < REPS; k++) {
		long r;

		t0 = now_us();
		r = dput(1, DET_SNAP, 0, 0, 0);
		t[k] = now_us() - t0;
		if (r == 0)
			det_exit(0);
		check(r, DET_S_READY, "dput(SNAP)");
		check(dput(1, DET_KILL, 0, 0, 0), 0, "DET_KILL");
	}
	snap_us = median(t, REPS);

	/* DET_SNAP on an existing child: two copies, the child switches. */
	check(dput(1, 0, 0, 0, 0), DET_S_READY, "dput");
	for (k = 0; k < REPS; k++) {
		t0 = now_us();
		check(dput(1, DET_SNAP, 0, 0, 0), DET_S_READY, "dput(SNAP)");
		t[k] = now_us() - t0;
	}
	resnap_us = median(t, REPS);
	check(dput(1, DET_KILL, 0, 0, 0), 0, "DET_KILL");

	/* Merge of pages only the child wrote. */
	for (k = 0; k < REPS; k++) {
		dirty_child(2, a, dirty, 3 + k);
		t[k] = time_merge(2, a, dirty, &rep);
		check(dput(2, DET_KILL, 0, 0, 0), 0, "DET_KILL");
		if (a[dirty - 1] != 3 + k || rep.copied_pages != dirty / PG) {
			fprintf(stderr, "det_membench: bad merge\n");
			return 1;
		}
	}
	merge_us = median(t, REPS);

	/* Merge of pages both sides wrote (disjoint bytes): byte compare. */
	for (k = 0; k < REPS; k++) {
		long r;

		r = dput(3, DET_SNAP | DET_START, 0, 0, 0);
		if (r == 0) {
			for (i = 0; i < dirty; i += 2 * 64)
				a[i] = 0x55;
			dret();
		}
		check(r, DET_S_RUNNING, "dput(SNAP|START)");
		for (i = 64; i < dirty; i += 2 * 64)
			a[i] = 0x66;
		check(dget(3, 0, 0, 0, 0), DET_S_READY, "dget");
		t[k] = time_merge(3, a, dirty, &rep);
		check(dput(3, DET_KILL, 0, 0, 0), 0, "DET_KILL");
	}
	both_us = median(t, REPS);

	printf("fork_%zumib_us %.1f\n", fork_mem >> 20, fork_us);
	printf("snap_new_child_us %.1f\n", snap_us);
	printf("snap_existing_child_us %.1f\n", resnap_us);
	printf("memcpy_per_mib_us %.1f (%.2f us/page)\n", memcpy_us / (dirty >> 20),
	       memcpy_us / (dirty / PG));
	printf("merge_child_only_per_mib_us %.1f\n", merge_us / (dirty >> 20));
	printf("merge_both_sides_per_mib_us %.1f\n", both_us / (dirty >> 20));

	/* Merge of clean ranges of growing size. */
	big = map(clean[2]);
	touch(big, clean[2], 7);
	dirty_child(4, big, 0, -1);
	for (i = 0; i < 3; i++) {
		for (k = 0; k < REPS; k++)
			t[k] = time_merge(4, big, clean[i], &rep);
		t0 = median(t, REPS);
		printf("merge_clean_%zumib_us %.1f (%.3f us/page, %llu pages copied)\n",
		       clean[i] >> 20, t0, t0 / (clean[i] / PG),
		       (unsigned long long)rep.copied_pages);
	}
	/* One dirty page in an untouched range of 1 MiB and of 1 GiB. */
	for (i = 0; i < 2; i++) {
		size_t size = i ? 1UL << 30 : 1UL << 20;
		unsigned char *r = mmap(NULL, size, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS |
					MAP_NORESERVE, -1, 0);

		if (r == MAP_FAILED) {
			perror("mmap");
			return 1;
		}
		for (k = 0; k < REPS; k++) {
			dirty_child(5, r + size / 2, PG, 9 + k);
			t[k] = time_merge(5, r, size, &rep);
			check(dput(5, DET_KILL, 0, 0, 0), 0, "DET_KILL");
		}
		sparse_us[i] = median(t, REPS);
		munmap(r, size);
	}
	printf("merge_1_page_in_1mib_us %.1f\n", sparse_us[0]);
	printf("merge_1_page_in_1gib_us %.1f\n", sparse_us[1]);

	printf("ratio merge_per_dirty_mib/memcpy %.2f (goal <= 1.5)\n",
	       merge_us / memcpy_us);
	printf("ratio merge_both_sides_per_mib/memcpy %.2f (goal <= 3)\n",
	       both_us / memcpy_us);
	printf("ratio merge_1_page_1gib/1mib %.2f (goal <= 2)\n",
	       sparse_us[1] / sparse_us[0]);
	printf("ratio snapshot/fork %.2f new child, %.2f existing child (goal <= 2.5)\n",
	       snap_us / fork_us, resnap_us / fork_us);
	return 0;
}
