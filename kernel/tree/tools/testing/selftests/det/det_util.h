/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the deterministic process selftests.
 *
 * Code that runs inside a deterministic child must not call libc functions
 * that make system calls (they would stop the child as a fault), so the
 * system calls here are raw and return -errno.
 */
#ifndef DET_UTIL_H
#define DET_UTIL_H

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <stdbool.h>
#include <sys/klog.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <linux/det.h>

static inline long det_raw5(long nr, long a, long b, long c, long d, long e)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;

	__asm__ volatile ("syscall"
			  : "=a"(ret)
			  : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
			  : "rcx", "r11", "memory");
	return ret;
}

static inline long dput(unsigned long child, unsigned long flags,
			unsigned long start, unsigned long size,
			unsigned long dst)
{
	return det_raw5(DET_NR_DPUT, child, flags, start, size, dst);
}

static inline long dget(unsigned long child, unsigned long flags,
			unsigned long start, unsigned long size,
			unsigned long dst)
{
	return det_raw5(DET_NR_DGET, child, flags, start, size, dst);
}

static inline long dret(void)
{
	return det_raw5(DET_NR_DRET, 0, 0, 0, 0, 0);
}

/* exit_group() without libc: safe in a deterministic child. */
static inline __attribute__((noreturn)) void det_exit(int code)
{
	for (;;)
		det_raw5(__NR_exit_group, code, 0, 0, 0, 0);
}

static inline long become_master(void)
{
	return dput(0, DET_BECOME_MASTER, 0, 0, 0);
}

/*
 * Read @n (<= one page) bytes at @child_addr in child @id into @out.
 * DET_VM_COPY needs the caller's and the child's addresses a page multiple
 * apart, so the bytes land in a page-aligned bounce buffer at the child
 * address's offset in its page.
 */
static inline long det_read_child(unsigned long id,
				  const volatile void *child_addr,
				  void *out, size_t n)
{
	static unsigned char bounce[2 * 4096] __attribute__((aligned(4096)));
	unsigned long off = (unsigned long)child_addr & 4095;
	long r;

	if (n > 4096)
		return -EINVAL;
	r = dget(id, DET_VM_COPY, (unsigned long)bounce + off, n,
		 (unsigned long)child_addr);
	if (r >= 0)
		memcpy(out, bounce + off, n);
	return r;
}

static inline long det_status(unsigned long child, struct det_status *st)
{
	memset(st, 0xa5, sizeof(*st));
	return dget(child, DET_GET_STATUS, (unsigned long)st, sizeof(*st), 0);
}

/* Bytes of DET_XSTATE_REGS on this machine, or -EINVAL without XSAVE. */
static inline long det_xstate_size(void)
{
	return dget(0, DET_REGS | DET_XSTATE_REGS, 0, 0, 0);
}

static inline double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/*
 * The next process in the /proc directory @dir: its pid and its parent's,
 * from /proc/<pid>/stat.  Returns 0 when there are no more.
 */
static inline int proc_next(DIR *dir, pid_t *pid, pid_t *ppid)
{
	struct dirent *de;

	while ((de = readdir(dir))) {
		char path[300], buf[512], *p;
		int pp, ok = 0;
		FILE *f;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(buf, sizeof(buf), f)) {
			p = strrchr(buf, ')');
			ok = p && sscanf(p + 2, "%*c %d", &pp) == 1;
		}
		fclose(f);
		if (ok) {
			*pid = atoi(de->d_name);
			*ppid = pp;
			return 1;
		}
	}
	return 0;
}

/* Collect up to @max pids of processes whose parent is @ppid. */
static inline int children_of(pid_t ppid, pid_t *out, int max)
{
	DIR *dir = opendir("/proc");
	pid_t pid, pp;
	int n = 0;

	if (!dir)
		return -1;
	while (n < max && proc_next(dir, &pid, &pp))
		if (pp == ppid)
			out[n++] = pid;
	closedir(dir);
	return n;
}

/* Count live processes whose parent is @ppid. */
static inline int count_children_of(pid_t ppid)
{
	DIR *dir = opendir("/proc");
	pid_t pid, pp;
	int n = 0;

	if (!dir)
		return -1;
	while (proc_next(dir, &pid, &pp))
		n += pp == ppid;
	closedir(dir);
	return n;
}

/*
 * Number of user processes in the system, from /proc: kernel threads
 * (kthreadd, pid 2, and its children) come and go on their own.
 */
static inline int count_processes(void)
{
	DIR *dir = opendir("/proc");
	struct dirent *de;
	int n = 0;

	if (!dir)
		return -1;
	while ((de = readdir(dir))) {
		char path[300], buf[512], *p;
		int pp = -1;
		FILE *f;

		if (de->d_name[0] < '0' || de->d_name[0] > '9' ||
		    atoi(de->d_name) == 2)
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(buf, sizeof(buf), f)) {
			p = strrchr(buf, ')');
			if (p && sscanf(p + 2, "%*c %d", &pp) == 1 && pp != 2)
				n++;
		}
		fclose(f);
	}
	closedir(dir);
	return n;
}

/*
 * A counter the det subsystem keeps in debugfs (det/@name), mounting
 * debugfs if need be; -1 on a kernel without it.
 */
static inline long det_debugfs_count(const char *name)
{
	char path[96];
	FILE *f;
	long v = -1;

	snprintf(path, sizeof(path), "/sys/kernel/debug/det/%s", name);
	f = fopen(path, "r");
	if (!f) {
		mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
		f = fopen(path, "r");
	}
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

static inline long meminfo_kb(const char *key)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	size_t len = strlen(key);
	long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, len) && line[len] == ':') {
			v = atol(line + len + 1);
			break;
		}
	fclose(f);
	return v;
}

/*
 * True on a KASAN kernel (the debug profile), where every allocation is
 * checked and freed objects sit in a quarantine: slow tests do less work
 * there and slab counters are no measure of leaks.
 */
static inline bool det_kernel_has_kasan(void)
{
	static char buf[1 << 20];
	static int known = -1;
	int n;

	if (known >= 0)
		return known;
	n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	known = n > 0 && strstr(buf, "KernelAddressSanitizer initialized");
	return known;
}

#endif /* DET_UTIL_H */
