// SPDX-License-Identifier: GPL-2.0
/*
 * Isolation (issue 13): nothing but its parent reaches a deterministic
 * process, and no unprivileged instruction tells it which CPU it is on.
 *
 * - outsider_table: from an unrelated process, every system call and /proc
 *   write that targets another process, against a parked child and a
 *   running one; printed as one table, each row must leave both alone.
 * - sigio_and_lease_signals: F_SETOWN + F_SETSIG(SIGKILL) on a pipe, a
 *   lease break and SIGURG do not reach a child (they bypass kill()).
 * - exec_drops_master, clone_vm_cannot_become_master: master state.
 * - cpu_identity_is_fixed: lsl on the per-CPU segment, rdpid, cpuid and
 *   sgdt give the same answer on every CPU.
 * - compat_syscall_stops: a `syscall` from 32-bit code stops the child.
 * - shared_mappings_dropped: a MAP_SHARED page is not in a child, after
 *   creation or DET_SNAP.
 * - file_private_pages_are_copies: a MAP_PRIVATE file page is the child's
 *   own copy: write() and ftruncate() of the file do not reach it.
 * - own_executable_cannot_change_under_a_child: the one file not copied,
 *   the child's own executable on tmpfs, can be neither opened for writing
 *   nor truncated while the child has it.
 * - exited_children_count_as_processes: RLIMIT_NPROC bounds how many
 *   exited children (and their memory) a master keeps.
 * - perf_events_not_inherited: a master's inherited sigtrap counter does
 *   not stop its child.
 * - sealed_vdso_refuses_children, moved_vdso_still_dropped: the clock
 *   pages go whatever the master did to them.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <linux/kcmp.h>
#include <linux/perf_event.h>

#include "det_test.h"

#define EXEC_PROBE_ENV	"DET_ISOLATION_EXEC_PROBE"

static long raw(long nr, long a, long b, long c, long d, long e)
{
	long r = syscall(nr, a, b, c, d, e);

	return r < 0 ? -errno : r;
}

/* ---- a master with a parked child (ID 1) and a running one (ID 2) ---- */

struct victims {
	pid_t master;
	pid_t pid[2];		/* parked, running */
	int cmd;		/* to the master */
	int res;		/* from the master */
};

/*
 * The master's side: create the children, report their pids, wait for the
 * word, then check each child is as it was: the parked one runs to its
 * dret() when started, the running one is still running, and a 64 MiB
 * DET_VM_ZERO (RLIMIT_AS) works in both.  Exit status: bit per problem.
 */
static void __attribute__((noreturn)) victim_master(int cmd, int res)
{
	struct det_status st;
	pid_t kids[4];
	int bad = 0, i;
	long r;
	char c;

	if (become_master())
		_exit(100);
	for (i = 1; i <= 2; i++) {
		r = dput(i, i == 2 ? DET_START : 0, 0, 0, 0);
		if (r == 0) {
			if (i == 2)
				for (;;)
					__asm__ volatile("" ::: "memory");
			for (;;)
				dret();
		}
		if (children_of(getpid(), kids, 4) != i)
			_exit(101);
		if (write(res, &kids[i - 1], sizeof(pid_t)) != sizeof(pid_t))
			_exit(102);
	}
	if (read(cmd, &c, 1) != 1)
		_exit(103);

	if (dget(2, DET_GET_STATUS | DET_DONT_WAIT, (unsigned long)&st,
		 sizeof(st), 0) != DET_S_RUNNING)
		bad |= 1;
	if (dput(2, DET_KILL | DET_KILL_POISON, 0, 0, 0))
		bad |= 2;
	if (dput(1, DET_START, 0, 0, 0) != DET_S_RUNNING ||
	    det_status(1, &st) != DET_S_READY || st.reason != DET_R_DRET)
		bad |= 4;
	if (dput(1, DET_VM_ZERO | DET_PROT_READ | DET_PROT_WRITE,
		 0x200000000000UL, 64UL << 20, 0) != DET_S_READY)
		bad |= 8;
	_exit(bad);
}

static void victims_start(struct __test_metadata *_metadata,
			  struct victims *v)
{
	int to[2], from[2];

	ASSERT_EQ(0, pipe(to));
	ASSERT_EQ(0, pipe(from));
	v->master = fork();
	ASSERT_LE(0, v->master);
	if (!v->master) {
		close(to[1]);
		close(from[0]);
		victim_master(to[0], from[1]);
	}
	close(to[0]);
	close(from[1]);
	v->cmd = to[1];
	v->res = from[0];
	ASSERT_EQ(sizeof(pid_t), read(v->res, &v->pid[0], sizeof(pid_t)));
	ASSERT_EQ(sizeof(pid_t), read(v->res, &v->pid[1], sizeof(pid_t)));
}

/* The master's verdict (0: both children as they were). */
static int victims_finish(struct victims *v)
{
	int status;

	if (write(v->cmd, "g", 1) != 1)
		return -1;
	if (waitpid(v->master, &status, 0) != v->master)
		return -1;
	close(v->cmd);
	close(v->res);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1000 + WTERMSIG(status);
}

/* ---- the outsider table ---- */

/*
 * Everything an outsider can read back about a process's settings; the
 * rows compare it before and after.
 */
struct seen {
	char state;		/* from /proc/PID/stat; 0: gone */
	int prio, policy, ioprio;
	cpu_set_t cpus;
	struct rlimit as, cpu, nofile;
	char oom[16];
	char cgroup[128];
};

static void read_proc(pid_t pid, const char *name, char *buf, size_t len)
{
	char path[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, name);
	memset(buf, 0, len);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return;
	n = read(fd, buf, len - 1);
	(void)n;
	close(fd);
}

static void observe(pid_t pid, struct seen *s)
{
	char stat[128], *p;

	memset(s, 0, sizeof(*s));
	read_proc(pid, "stat", stat, sizeof(stat));
	p = strrchr(stat, ')');
	s->state = p && p[1] ? p[2] : 0;
	if (s->state == 'Z' || s->state == 'X')
		s->state = 0;
	s->prio = getpriority(PRIO_PROCESS, pid);
	s->policy = sched_getscheduler(pid);
	s->ioprio = syscall(SYS_ioprio_get, 1 /* WHO_PROCESS */, pid);
	sched_getaffinity(pid, sizeof(s->cpus), &s->cpus);
	prlimit(pid, RLIMIT_AS, NULL, &s->as);
	prlimit(pid, RLIMIT_CPU, NULL, &s->cpu);
	prlimit(pid, RLIMIT_NOFILE, NULL, &s->nofile);
	read_proc(pid, "oom_score_adj", s->oom, sizeof(s->oom));
	read_proc(pid, "cgroup", s->cgroup, sizeof(s->cgroup));
}

typedef long (*attack_fn)(pid_t pid);

static long a_kill(pid_t pid) { return raw(SYS_kill, pid, SIGKILL, 0, 0, 0); }
static long a_stop(pid_t pid) { return raw(SYS_kill, pid, SIGSTOP, 0, 0, 0); }
static long a_tgkill(pid_t pid)
{
	return raw(SYS_tgkill, pid, pid, SIGKILL, 0, 0);
}

static long a_sigqueue(pid_t pid)
{
	siginfo_t si = { .si_code = SI_QUEUE, .si_signo = SIGKILL };

	return raw(SYS_rt_sigqueueinfo, pid, SIGKILL, (long)&si, 0, 0);
}

static long with_pidfd(pid_t pid, long (*fn)(int fd))
{
	int fd = syscall(SYS_pidfd_open, pid, 0);
	long r;

	if (fd < 0)
		return -errno;
	r = fn(fd);
	close(fd);
	return r;
}

static long p_signal(int fd)
{
	return raw(SYS_pidfd_send_signal, fd, SIGKILL, 0, 0, 0);
}

static long p_getfd(int fd) { return raw(SYS_pidfd_getfd, fd, 0, 0, 0, 0); }
static long p_mrelease(int fd)
{
	return raw(SYS_process_mrelease, fd, 0, 0, 0, 0);
}

static long p_madvise(int fd)
{
	struct iovec iov = { .iov_base = (void *)0x400000, .iov_len = 4096 };

	return raw(SYS_process_madvise, fd, (long)&iov, 1, MADV_PAGEOUT, 0);
}

static long a_pidfd_signal(pid_t pid) { return with_pidfd(pid, p_signal); }
static long a_pidfd_getfd(pid_t pid) { return with_pidfd(pid, p_getfd); }
static long a_mrelease(pid_t pid) { return with_pidfd(pid, p_mrelease); }
static long a_pmadvise(pid_t pid) { return with_pidfd(pid, p_madvise); }

/* Arm a pipe's read end with @arm(fd, pid) and O_ASYNC, then write. */
static long pipe_sigio(pid_t pid, int (*arm)(int fd, pid_t pid))
{
	int p[2];
	long r;

	if (pipe(p))
		return -errno;
	r = arm(p[0], pid) || fcntl(p[0], F_SETFL, O_ASYNC | O_NONBLOCK) ?
	    -errno : 0;
	if (!r && write(p[1], "x", 1) != 1)
		r = -errno;
	close(p[0]);
	close(p[1]);
	return r;
}

/* F_SETOWN(pid) + F_SETSIG(SIGKILL). */
static int arm_setsig(int fd, pid_t pid)
{
	return fcntl(fd, F_SETOWN, pid) || fcntl(fd, F_SETSIG, SIGKILL);
}

/* F_SETOWN_EX(F_OWNER_TID), the plain SIGIO. */
static int arm_tid(int fd, pid_t pid)
{
	struct f_owner_ex o = { .type = F_OWNER_TID, .pid = pid };

	return fcntl(fd, F_SETOWN_EX, &o);
}

static long a_sigio(pid_t pid) { return pipe_sigio(pid, arm_setsig); }
static long a_sigio_tid(pid_t pid) { return pipe_sigio(pid, arm_tid); }

/* SIGURG to the owner of a socket that receives out-of-band data. */
static long a_sigurg(pid_t pid)
{
	int sv[2];
	long r;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return -errno;
	r = fcntl(sv[1], F_SETOWN, pid) ? -errno : 0;
	if (!r && send(sv[0], "x", 1, MSG_OOB) != 1)
		r = -errno;
	close(sv[0]);
	close(sv[1]);
	return r;
}

/* A read lease owned by pid with F_SETSIG(SIGKILL), broken by an open. */
static long a_lease(pid_t pid)
{
	char path[] = "/tmp/det-lease-XXXXXX";
	int fd = mkstemp(path), rd, wr;
	long r;

	if (fd < 0)
		return -errno;
	close(fd);
	rd = open(path, O_RDONLY);
	r = rd < 0 || fcntl(rd, F_SETOWN, pid) ||
	    fcntl(rd, F_SETSIG, SIGKILL) || fcntl(rd, F_SETLEASE, F_RDLCK) ?
	    -errno : 0;
	if (!r) {
		wr = open(path, O_WRONLY | O_NONBLOCK);
		if (wr >= 0)
			close(wr);
	}
	if (rd >= 0)
		close(rd);
	unlink(path);
	return r;
}

static long a_setprio(pid_t pid)
{
	return setpriority(PRIO_PROCESS, pid, 19) ? -errno : 0;
}

static long setsched(pid_t pid, int policy, int prio)
{
	struct sched_param sp = { .sched_priority = prio };

	return sched_setscheduler(pid, policy, &sp) ? -errno : 0;
}

static long a_sched_idle(pid_t pid) { return setsched(pid, SCHED_IDLE, 0); }
static long a_sched_fifo(pid_t pid) { return setsched(pid, SCHED_FIFO, 1); }

/* struct sched_attr, SCHED_ATTR_SIZE_VER0 (glibc's sched.h lacks it). */
struct det_sched_attr {
	__u32 size, sched_policy;
	__u64 sched_flags;
	__s32 sched_nice;
	__u32 sched_priority;
	__u64 sched_runtime, sched_deadline, sched_period;
};

static long a_sched_setattr(pid_t pid)
{
	struct det_sched_attr a = { .size = sizeof(a),
				    .sched_policy = SCHED_BATCH,
				    .sched_nice = 10 };

	return raw(SYS_sched_setattr, pid, (long)&a, 0, 0, 0);
}

static long a_affinity(pid_t pid)
{
	cpu_set_t s;

	CPU_ZERO(&s);
	CPU_SET(1, &s);
	return sched_setaffinity(pid, sizeof(s), &s) ? -errno : 0;
}

static long a_ioprio(pid_t pid)
{
	/* IOPRIO_WHO_PROCESS, class IDLE. */
	return raw(SYS_ioprio_set, 1, pid, 3 << 13, 0, 0);
}

static long setlim(pid_t pid, int res, rlim_t v)
{
	struct rlimit l = { v, v };

	return prlimit(pid, res, &l, NULL) ? -errno : 0;
}

static long a_rlimit_as(pid_t pid) { return setlim(pid, RLIMIT_AS, 1 << 20); }
static long a_rlimit_cpu(pid_t pid) { return setlim(pid, RLIMIT_CPU, 1); }
static long a_rlimit_nofile(pid_t pid)
{
	return setlim(pid, RLIMIT_NOFILE, 3);
}

static long a_ptrace_attach(pid_t pid)
{
	long r = ptrace(PTRACE_ATTACH, pid, 0, 0) ? -errno : 0;

	if (!r)
		ptrace(PTRACE_DETACH, pid, 0, 0);
	return r;
}

static long a_ptrace_seize(pid_t pid)
{
	long r = ptrace(PTRACE_SEIZE, pid, 0, 0) ? -errno : 0;

	if (!r)
		ptrace(PTRACE_DETACH, pid, 0, 0);
	return r;
}

static long a_vm_writev(pid_t pid)
{
	char buf[8] = "outside";
	struct iovec l = { buf, sizeof(buf) };
	struct iovec rem = { (void *)0x400000, sizeof(buf) };

	return process_vm_writev(pid, &l, 1, &rem, 1, 0) < 0 ? -errno : 0;
}

static long a_vm_readv(pid_t pid)
{
	char buf[8];
	struct iovec l = { buf, sizeof(buf) };
	struct iovec rem = { (void *)0x400000, sizeof(buf) };

	return process_vm_readv(pid, &l, 1, &rem, 1, 0) < 0 ? -errno : 0;
}

static long a_kcmp(pid_t pid)
{
	return raw(SYS_kcmp, getpid(), pid, KCMP_VM, 0, 0);
}

/* A task-clock counter on the child that would stop it with SIGTRAP. */
static long a_perf(pid_t pid)
{
	struct perf_event_attr a = { .type = PERF_TYPE_SOFTWARE,
				     .size = sizeof(a),
				     .config = PERF_COUNT_SW_TASK_CLOCK,
				     .sample_period = 1000000,
				     .sigtrap = 1, .remove_on_exec = 1 };
	long fd = raw(SYS_perf_event_open, (long)&a, pid, -1, -1, 0);

	if (fd >= 0)
		close(fd);
	return fd < 0 ? fd : 0;
}

/*
 * Move it to another cgroup: mount cgroup2, make a group, write the pid to
 * its cgroup.procs.  detlinux kernels have no cgroups (CONFIG_DET depends
 * on !CGROUPS), so the mount itself fails; were it to work, the move must
 * not (observe() compares /proc/PID/cgroup).
 */
static long a_cgroup_move(pid_t pid)
{
	char dir[] = "/tmp/det_cgroup_XXXXXX", path[128], num[16];
	long r = 0;
	int fd, n;

	if (!mkdtemp(dir))
		return -errno;
	if (mount("none", dir, "cgroup2", 0, NULL)) {
		r = -errno;
		rmdir(dir);
		return r;
	}
	snprintf(path, sizeof(path), "%s/det_outsider", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/det_outsider/cgroup.procs", dir);
	n = snprintf(num, sizeof(num), "%d", pid);
	fd = open(path, O_WRONLY);
	if (fd < 0 || write(fd, num, n) < 0)
		r = -errno;
	if (fd >= 0)
		close(fd);
	umount2(dir, MNT_DETACH);
	rmdir(dir);
	return r;
}

static const struct {
	const char *name;
	attack_fn fn;
} attacks[] = {
	{ "kill(SIGKILL)", a_kill },
	{ "kill(SIGSTOP)", a_stop },
	{ "tgkill(SIGKILL)", a_tgkill },
	{ "rt_sigqueueinfo(SIGKILL)", a_sigqueue },
	{ "pidfd_send_signal(SIGKILL)", a_pidfd_signal },
	{ "F_SETOWN+F_SETSIG(SIGKILL) pipe", a_sigio },
	{ "F_SETOWN_EX(TID) SIGIO pipe", a_sigio_tid },
	{ "F_SETOWN SIGURG (MSG_OOB)", a_sigurg },
	{ "F_SETLEASE+F_SETSIG(SIGKILL)", a_lease },
	{ "setpriority(19)", a_setprio },
	{ "sched_setscheduler(IDLE)", a_sched_idle },
	{ "sched_setscheduler(FIFO)", a_sched_fifo },
	{ "sched_setattr(BATCH)", a_sched_setattr },
	{ "sched_setaffinity({1})", a_affinity },
	{ "ioprio_set(IDLE)", a_ioprio },
	{ "prlimit(RLIMIT_AS)", a_rlimit_as },
	{ "prlimit(RLIMIT_CPU)", a_rlimit_cpu },
	{ "prlimit(RLIMIT_NOFILE)", a_rlimit_nofile },
	{ "ptrace(ATTACH)", a_ptrace_attach },
	{ "ptrace(SEIZE)", a_ptrace_seize },
	{ "process_vm_writev", a_vm_writev },
	{ "process_vm_readv", a_vm_readv },
	{ "process_madvise(PAGEOUT)", a_pmadvise },
	{ "process_mrelease", a_mrelease },
	{ "pidfd_getfd", a_pidfd_getfd },
	{ "kcmp(KCMP_VM)", a_kcmp },
	{ "perf_event_open(sigtrap)", a_perf },
	{ "cgroup.procs write (move)", a_cgroup_move },
};

/* Try to open /proc/PID/<name> for writing and write "1". */
static long proc_write(pid_t pid, const char *name)
{
	char path[300];
	long r = 0;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, name);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	if (write(fd, "1\n", 2) < 0)
		r = -errno;
	close(fd);
	return r;
}

static void result(char *buf, size_t len, long r, bool changed)
{
	snprintf(buf, len, "%s%s", r < 0 ? strerror(-r) : "ok",
		 changed ? " CHANGED" : "");
}

/*
 * One row: try @fn or the /proc file @file on both children, read back what
 * an outsider can see of them, print the row.  Returns the number of
 * children changed.
 */
static int row(const char *name, attack_fn fn, const char *file,
	       const pid_t *pid)
{
	char res[2][48];
	int bad = 0, i;

	for (i = 0; i < 2; i++) {
		struct seen before, after;
		bool changed;
		long r;

		observe(pid[i], &before);
		r = fn ? fn(pid[i]) : proc_write(pid[i], file);
		usleep(20000);	/* let a signal land */
		observe(pid[i], &after);
		/* A parked child sleeps (S), a running one runs (R). */
		changed = memcmp(&before, &after, sizeof(before)) ||
			  !after.state || after.state == 'T' ||
			  after.state == 't';
		/* A /proc write that went through changed something. */
		if (!fn && r >= 0)
			changed = true;
		bad += changed;
		result(res[i], sizeof(res[i]), r, changed);
	}
	printf("# | %-34s | %-22s | %-22s |\n", name, res[0], res[1]);
	return bad;
}

/*
 * From the master's parent -- an outsider to the children -- try every
 * call that targets another process, and write every writable /proc file
 * of each child.  Both children must be exactly as they were; the master
 * checks it can still drive them.
 */
TEST(outsider_table)
{
	struct victims v;
	char path[64], name[400];
	struct dirent *de;
	unsigned int i;
	int bad = 0;
	DIR *dir;

	victims_start(_metadata, &v);
	printf("# | %-34s | %-22s | %-22s |\n", "outsider operation",
	       "parked child", "running child");
	printf("# |%s|%s|%s|\n", "------------------------------------",
	       "------------------------", "------------------------");
	for (i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++)
		bad += row(attacks[i].name, attacks[i].fn, NULL, v.pid);

	snprintf(path, sizeof(path), "/proc/%d", v.pid[0]);
	dir = opendir(path);
	ASSERT_NE(NULL, dir);
	while ((de = readdir(dir))) {
		struct stat sb;

		snprintf(name, sizeof(name), "%s/%s", path, de->d_name);
		if (de->d_name[0] == '.' || stat(name, &sb) ||
		    !S_ISREG(sb.st_mode) || !(sb.st_mode & 0222))
			continue;
		snprintf(name, sizeof(name), "/proc/PID/%s", de->d_name);
		bad += row(name, NULL, de->d_name, v.pid);
	}
	closedir(dir);
	EXPECT_EQ(0, bad);
	EXPECT_EQ(0, victims_finish(&v));
}

/* The signal paths that bypass kill(), on their own. */
TEST(sigio_and_lease_signals)
{
	struct victims v;
	int i;

	victims_start(_metadata, &v);
	for (i = 0; i < 2; i++) {
		EXPECT_EQ(0, a_sigio(v.pid[i]));
		EXPECT_EQ(0, a_sigio_tid(v.pid[i]));
		EXPECT_EQ(0, a_lease(v.pid[i]));
		a_sigurg(v.pid[i]);
	}
	EXPECT_EQ(0, victims_finish(&v));
}

/*
 * Only the parent changes a child: the same calls from the master work.
 */
TEST(parent_may_change_child)
{
	pid_t kid;
	long r;

	ASSERT_EQ(0, become_master());
	r = dput(1, 0, 0, 0, 0);
	if (r == 0)
		for (;;)
			dret();
	ASSERT_EQ(DET_S_READY, r);
	ASSERT_EQ(1, children_of(getpid(), &kid, 1));
	EXPECT_EQ(0, a_setprio(kid));
	EXPECT_EQ(0, a_rlimit_nofile(kid));
	EXPECT_EQ(0, proc_write(kid, "oom_score_adj"));
	EXPECT_EQ(-EPERM, a_kill(kid));
}

/* ---- master state ---- */

/*
 * Run in the exec'd image before the harness: still a master, or not?
 * Exit status: 0 legacy with no det children and fork() working.
 */
static void __attribute__((constructor)) exec_probe(void)
{
	pid_t p;
	int bad = 0;

	if (!getenv(EXEC_PROBE_ENV))
		return;
	p = fork();
	if (p == 0)
		_exit(0);
	if (p < 0)
		bad |= 1;
	else
		waitpid(p, NULL, 0);
	if (count_children_of(getpid()) != 0)
		bad |= 2;
	if (become_master() != 0)
		bad |= 4;
	_exit(bad);
}

TEST(exec_drops_master)
{
	int status;
	pid_t m = fork();

	ASSERT_LE(0, m);
	if (!m) {
		char *argv[] = { "det_isolation", NULL };
		char *envp[] = { EXEC_PROBE_ENV "=1", NULL };
		long r;

		if (become_master())
			_exit(100);
		r = dput(1, DET_START, 0, 0, 0);
		if (r == 0)
			for (;;)
				;
		execve("/proc/self/exe", argv, envp);
		_exit(101);
	}
	ASSERT_EQ(m, waitpid(m, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

static char clone_stack[64 << 10] __attribute__((aligned(16)));
static volatile long sharer_result;

static int sharer(void *arg)
{
	(void)arg;
	sharer_result = become_master();
	return 0;
}

/* A process sharing its mm with another (CLONE_VM) cannot become a master. */
TEST(clone_vm_cannot_become_master)
{
	int status;
	pid_t p;

	p = clone(sharer, clone_stack + sizeof(clone_stack),
		  CLONE_VM | SIGCHLD, NULL);
	ASSERT_LE(0, p);
	ASSERT_EQ(p, waitpid(p, &status, 0));
	EXPECT_EQ(-EBUSY, sharer_result);
	/* Neither may the process it shared with. */
	EXPECT_EQ(-EBUSY, become_master());

	p = vfork();
	if (p == 0)
		_exit(become_master() == -EBUSY ? 0 : 1);
	ASSERT_EQ(p, waitpid(p, &status, 0));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

/* ---- CPU identity ---- */

struct cpu_view {
	unsigned long lsl;
	unsigned int cpuid1_ebx, cpuid1_ecx, cpuid7_ebx, cpuidb_edx;
	unsigned char gdt[10];
};

static struct cpu_view view;

static void cpuid2(unsigned int leaf, unsigned int sub, unsigned int *r)
{
	__asm__ volatile("cpuid"
			 : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(sub));
}

static void look(void)
{
	unsigned int r[4];

	__asm__ volatile("lsl %1, %0" : "=r"(view.lsl) : "r"(0x7bUL));
	cpuid2(1, 0, r);
	view.cpuid1_ebx = r[1];
	view.cpuid1_ecx = r[2];
	cpuid2(7, 0, r);
	view.cpuid7_ebx = r[1];
	cpuid2(0xb, 0, r);
	view.cpuidb_edx = r[3];
	__asm__ volatile("sgdt %0" : "=m"(view.gdt));
}

static int cpu_flag(const char *flag)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[4096];
	int found = 0;

	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f))
		if (!strncmp(line, "flags", 5)) {
			char *p = strstr(line, flag);

			found = p && p[-1] == ' ' &&
				(p[strlen(flag)] == ' ' || p[strlen(flag)] == '\n');
		}
	fclose(f);
	return found;
}

/* What a child running on @cpu sees. */
static int child_view(struct __test_metadata *_metadata, int cpu,
		      struct cpu_view *out)
{
	struct det_status st;
	cpu_set_t s;
	long r;

	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	if (sched_setaffinity(0, sizeof(s), &s))
		return -1;
	r = dput(cpu + 1, 0, 0, 0, 0);
	if (r == 0) {
		look();
		for (;;)
			dret();
	}
	EXPECT_EQ(DET_S_RUNNING, dput(cpu + 1, DET_START, 0, 0, 0));
	EXPECT_EQ(DET_S_READY, det_status(cpu + 1, &st));
	EXPECT_EQ(DET_R_DRET, st.reason);
	/* The child's view onto the master's own (unused) copy. */
	EXPECT_LE(0, dget(cpu + 1, DET_VM_COPY, (unsigned long)&view,
			  sizeof(view), (unsigned long)&view));
	*out = view;
	return 0;
}

TEST(cpu_identity_is_fixed)
{
	struct cpu_view v[2];
	int cpuid_fault = cpu_flag("cpuid_fault"), umip = cpu_flag("umip");
	unsigned int r[4];

	/*
	 * rdpid would read the fixed TSC_AUX too, but QEMU TCG faults it
	 * under CR4.TSD (real CPUs do not), so it is not tried here.
	 */
	printf("# guest CPU: cpuid_fault %d, umip %d, rdpid %d, rdrand %d, rdseed %d\n",
	       cpuid_fault, umip, cpu_flag("rdpid"), cpu_flag("rdrand"),
	       cpu_flag("rdseed"));
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		SKIP(return, "needs 2 CPUs");
	ASSERT_EQ(0, become_master());
	ASSERT_EQ(0, child_view(_metadata, 0, &v[0]));
	ASSERT_EQ(0, child_view(_metadata, 1, &v[1]));
	printf("# lsl 0x7b on CPU 0 / 1: %#lx / %#lx; cpuid.1 ebx %#x / %#x\n",
	       v[0].lsl, v[1].lsl, v[0].cpuid1_ebx, v[1].cpuid1_ebx);
	EXPECT_EQ(0, v[0].lsl);
	EXPECT_EQ(0, v[1].lsl);
	if (umip) {
		EXPECT_EQ(0, memcmp(v[0].gdt, v[1].gdt, sizeof(v[0].gdt)));
	} else {
		printf("# no UMIP in this CPU: sgdt not checked\n");
	}
	if (!cpuid_fault) {
		printf("# no CPUID faulting in this CPU: cpuid runs natively (known gap)\n");
		return;
	}
	EXPECT_EQ(v[0].cpuid1_ebx, v[1].cpuid1_ebx);
	EXPECT_EQ(0, v[1].cpuid1_ebx >> 24);
	EXPECT_EQ(0, v[1].cpuid1_ecx & (1U << 30));	/* RDRAND */
	EXPECT_EQ(0, v[1].cpuid7_ebx & (1U << 18));	/* RDSEED */
	EXPECT_EQ(0, v[1].cpuidb_edx);
	/* The master's own view is the CPU's. */
	cpuid2(1, 0, r);
	printf("# master cpuid.1 ecx %#x, child %#x\n", r[2], v[1].cpuid1_ecx);
}

/* ---- a syscall from compat mode ---- */

/*
 * Code in a page below 2 GiB: a far pointer to 32-bit code (selector 0x23)
 * that makes getpid (20) with `syscall`; if that returns, it far-jumps to
 * 64-bit code (selector 0x33) that calls exit_group(7).  Far jumps, not
 * far returns: QEMU TCG pops a far return's stack as a supervisor access,
 * which SMAP turns into a kernel oops.
 */
static unsigned char *compat_page;

#define COMPAT_LAND	0x40
#define COMPAT_FAR	0x80

static void build_compat_page(void)
{
	unsigned char *p = compat_page;
	unsigned int base = (unsigned long)p, land = base + COMPAT_LAND;
	unsigned short cs32 = 0x23;
	unsigned char code32[] = {
		0xb8, 20, 0, 0, 0,		/* mov $20, %eax */
		0x0f, 0x05,			/* syscall */
		0xea, 0, 0, 0, 0, 0x33, 0,	/* ljmp $0x33, $land */
	};
	unsigned char code64[] = {
		0xb8, 231, 0, 0, 0,		/* mov $__NR_exit_group, %eax */
		0xbf, 7, 0, 0, 0,		/* mov $7, %edi */
		0x0f, 0x05,			/* syscall */
	};

	memcpy(code32 + 8, &land, 4);
	memcpy(p, code32, sizeof(code32));
	memcpy(p + COMPAT_LAND, code64, sizeof(code64));
	memcpy(p + COMPAT_FAR, &base, 4);
	memcpy(p + COMPAT_FAR + 4, &cs32, 2);
}

static void do_compat_syscall(void)
{
	/*
	 * A stack below 4 GiB: the kernel reads the caller's ebp from
	 * (u32)esp before the system call; if that fails, it returns
	 * -EFAULT to the 32-bit vDSO's landing pad, which a child does not
	 * have (a SIGSEGV stop).
	 */
	__asm__ volatile("mov %1, %%rsp\n\t"
			 "ljmpl *(%0)"
			 : : "r"(compat_page + COMPAT_FAR),
			     "r"(compat_page + 4096 - 16)
			 : "memory");
	det_exit(8);	/* not reached */
}

TEST(compat_syscall_stops)
{
	struct det_status st;
	long r;

	compat_page = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	ASSERT_NE(MAP_FAILED, compat_page);
	build_compat_page();
	ASSERT_EQ(0, become_master());
	r = dput(1, 0, 0, 0, 0);
	if (r == 0)
		do_compat_syscall();
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	r = det_status(1, &st);
	printf("# compat syscall: status %ld reason %u signo %d nr %lld exit %d\n",
	       r, st.reason, st.signo, (long long)st.syscall_nr, st.exit_code);
	ASSERT_EQ(DET_S_EXCEPT, r);
	if (st.reason == DET_R_SIGNAL) {
		/* A CPU without compat-mode SYSCALL (Intel): #UD. */
		EXPECT_EQ(SIGILL, st.signo);
		return;
	}
	EXPECT_EQ(DET_R_SYSCALL, st.reason);
	EXPECT_EQ(20, st.syscall_nr);
}

/* ---- shared memory is not inherited ---- */

static volatile unsigned char *shared_page;

static void read_shared(void)
{
	(void)*shared_page;
	for (;;)
		dret();
}

/*
 * A shared page the master (or anyone) writes after creation or DET_SNAP
 * must not be what the child reads: the child has no such mapping.
 */
TEST(shared_mappings_dropped)
{
	struct det_status st;
	long r;

	shared_page = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, shared_page);
	ASSERT_EQ(0, become_master());
	r = dput(1, 0, 0, 0, 0);
	if (r == 0)
		read_shared();
	ASSERT_EQ(DET_S_READY, r);
	*shared_page = 42;
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	EXPECT_EQ(DET_S_EXCEPT, det_status(1, &st));
	EXPECT_EQ(SIGSEGV, st.signo);
	EXPECT_EQ((unsigned long)shared_page, st.addr);

	/* The same after a DET_SNAP of an existing child. */
	r = dput(2, 0, 0, 0, 0);
	if (r == 0)
		read_shared();
	ASSERT_EQ(DET_S_READY, r);
	ASSERT_EQ(DET_S_READY, dput(2, DET_SNAP, 0, 0, 0));
	ASSERT_EQ(DET_S_RUNNING, dput(2, DET_START, 0, 0, 0));
	EXPECT_EQ(DET_S_EXCEPT, det_status(2, &st));
	EXPECT_EQ(SIGSEGV, st.signo);
}

/* ---- private file mappings are private copies ---- */

static unsigned char *file_page;
static volatile unsigned char file_seen[2];

static void __attribute__((noreturn)) read_file_pages(void)
{
	for (;;) {
		file_seen[0] = file_page[0];
		file_seen[1] = file_page[4096];
		dret();
	}
}

/* Fill the file's page @pg with @c, as any writer of the file could. */
static void write_file(int fd, int pg, char c)
{
	char buf[4096];

	memset(buf, c, sizeof(buf));
	if (pwrite(fd, buf, sizeof(buf), pg * 4096L) != sizeof(buf))
		abort();
}

/*
 * A MAP_PRIVATE file page the child has not written is its own copy:
 * after its creation, or a DET_SNAP, a write() to the file does not change
 * what it reads, and an ftruncate() does not make the read a SIGBUS.
 * The master's mapping is read-only and never touched, as program text
 * often is.
 */
TEST(file_private_pages_are_copies)
{
	char path[] = "/tmp/det_isolation_XXXXXX";
	unsigned char seen[2];
	struct det_status st;
	int fd;
	long r;

	fd = mkstemp(path);
	ASSERT_LE(0, fd);
	unlink(path);
	write_file(fd, 0, 'A');
	write_file(fd, 1, 'A');
	file_page = mmap(NULL, 2 * 4096, PROT_READ, MAP_PRIVATE, fd, 0);
	ASSERT_NE(MAP_FAILED, file_page);
	ASSERT_EQ(0, become_master());
	r = dput(1, 0, 0, 0, 0);
	if (r == 0)
		read_file_pages();
	ASSERT_EQ(DET_S_READY, r);

	/* Created: the file changes under it. */
	write_file(fd, 0, 'B');
	ASSERT_EQ(0, ftruncate(fd, 4096));
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	EXPECT_EQ(DET_S_READY, det_status(1, &st)) {
		TH_LOG("child stopped: signal %d at %#llx", st.signo,
		       (unsigned long long)st.addr);
	}
	ASSERT_EQ(DET_S_READY, det_read_child(1, file_seen, seen, 2));
	EXPECT_EQ('A', seen[0]);
	EXPECT_EQ('A', seen[1]);

	/*
	 * DET_SNAP: the child now has the master's view ('B', and no second
	 * page: past the end of the file, read as zeros), and keeps it.
	 */
	ASSERT_EQ(DET_S_READY, dput(1, DET_SNAP, 0, 0, 0));
	write_file(fd, 0, 'C');
	write_file(fd, 1, 'C');
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	EXPECT_EQ(DET_S_READY, det_status(1, &st)) {
		TH_LOG("child stopped: signal %d at %#llx", st.signo,
		       (unsigned long long)st.addr);
	}
	ASSERT_EQ(DET_S_READY, det_read_child(1, file_seen, seen, 2));
	EXPECT_EQ('B', seen[0]);
	EXPECT_EQ(0, seen[1]);
	EXPECT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
	close(fd);
}

/*
 * The one file a child's mappings are not copied from: its own executable
 * on tmpfs, which it denies write access to for as long as it has it.
 * Nothing writes or truncates it meanwhile, through any name; the child
 * reads its own text and data as the master does.
 */
static const unsigned char *exe_text = (const unsigned char *)read_file_pages;
static int g_marker = 1;	/* .data, a private mapping of the file */

static void __attribute__((noreturn)) read_exe_pages(void)
{
	for (;;) {
		file_seen[0] = exe_text[0];
		file_seen[1] = (unsigned char)g_marker;
		dret();
	}
}

TEST(own_executable_cannot_change_under_a_child)
{
	unsigned char seen[2];
	struct det_status st;
	long r;

	g_marker = 0x5a;
	ASSERT_EQ(0, become_master());
	r = dput(1, 0, 0, 0, 0);
	if (r == 0)
		read_exe_pages();
	ASSERT_EQ(DET_S_READY, r);
	EXPECT_EQ(-1, open("/proc/self/exe", O_WRONLY));
	EXPECT_EQ(ETXTBSY, errno);
	EXPECT_EQ(-1, truncate("/proc/self/exe", 0));
	EXPECT_EQ(ETXTBSY, errno);
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	EXPECT_EQ(DET_S_READY, det_status(1, &st)) {
		TH_LOG("child stopped: signal %d at %#llx", st.signo,
		       (unsigned long long)st.addr);
	}
	ASSERT_EQ(DET_S_READY, det_read_child(1, file_seen, seen, 2));
	EXPECT_EQ(exe_text[0], seen[0]);
	EXPECT_EQ(0x5a, seen[1]);
	EXPECT_EQ(0, dput(1, DET_KILL, 0, 0, 0));
}

/* ---- exited children count against RLIMIT_NPROC ---- */

#define NPROC_LIMIT 10

TEST(exited_children_count_as_processes)
{
	struct rlimit l = { NPROC_LIMIT, NPROC_LIMIT };
	struct det_status st;
	int status, made = 0;
	long r = 0;
	pid_t m;

	m = fork();
	ASSERT_LE(0, m);
	if (!m) {
		if (setrlimit(RLIMIT_NPROC, &l) || setresgid(65534, 65534, 65534) ||
		    setresuid(65534, 65534, 65534) || become_master())
			_exit(100);
		for (made = 0; made < 4 * NPROC_LIMIT; made++) {
			r = dput(made, DET_START, 0, 0, 0);
			if (r == 0)
				det_exit(0);
			if (r < 0)
				break;
			if (det_status(made, &st) != DET_S_EXIT_NORMAL)
				_exit(101);
		}
		printf("# exited children held under RLIMIT_NPROC %d: %d, then %s\n",
		       NPROC_LIMIT, made, r < 0 ? strerror(-r) : "no error");
		if (r != -EAGAIN || made >= NPROC_LIMIT)
			_exit(102);
		/* Killing one makes room for one. */
		if (dput(0, DET_KILL, 0, 0, 0) ||
		    dput(made, 0, 0, 0, 0) != DET_S_READY)
			_exit(103);
		_exit(0);
	}
	ASSERT_EQ(m, waitpid(m, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

/* ---- perf events are not inherited ---- */

static volatile int traps;

static void on_trap(int sig)
{
	(void)sig;
	traps++;
}

static void spin_then_dret(void)
{
	for (volatile long i = 0; i < 20000000; i++)
		;
	for (;;)
		dret();
}

/*
 * A master's inherited task-clock event with sigtrap would stop its child
 * with SIGTRAP at timing-dependent points.
 */
TEST(perf_events_not_inherited)
{
	struct perf_event_attr a = { .type = PERF_TYPE_SOFTWARE,
				     .size = sizeof(a),
				     .config = PERF_COUNT_SW_TASK_CLOCK,
				     .sample_period = 100000,
				     .inherit = 1, .sigtrap = 1,
				     .remove_on_exec = 1 };
	struct sigaction sa = { .sa_handler = on_trap };
	struct det_status st;
	long fd, r;

	sigaction(SIGTRAP, &sa, NULL);
	fd = raw(SYS_perf_event_open, (long)&a, 0, -1, -1, 0);
	if (fd < 0)
		SKIP(return, "perf_event_open: %s", strerror(-fd));
	ASSERT_EQ(0, become_master());
	r = dput(1, 0, 0, 0, 0);
	if (r == 0)
		spin_then_dret();
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	r = det_status(1, &st);
	printf("# child: status %ld signo %d code %d; master traps %d\n", r,
	       st.signo, st.code, traps);
	EXPECT_EQ(DET_S_READY, r);
	EXPECT_EQ(DET_R_DRET, st.reason);
	close(fd);
}

/* ---- the vDSO when the master sealed or moved it ---- */

/* [start, end) of the mapping named @name in /proc/self/maps. */
static int find_map(const char *name, unsigned long *start,
		    unsigned long *end)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	int found = 0;

	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, name) &&
			sscanf(line, "%lx-%lx", start, end) == 2;
	fclose(f);
	return found;
}

/* A master that mseal()ed its clock pages cannot create a child. */
TEST(sealed_vdso_refuses_children)
{
	unsigned long vs, ve, ts, te;
	long r;

	ASSERT_TRUE(find_map("[vvar]", &vs, &ve));
	ASSERT_TRUE(find_map("[vdso]", &ts, &te));
	r = raw(462 /* mseal */, vs, ve - vs, 0, 0, 0);
	if (r == -ENOSYS)
		SKIP(return, "no mseal()");
	ASSERT_EQ(0, r);
	ASSERT_EQ(0, raw(462, ts, te - ts, 0, 0, 0));
	ASSERT_EQ(0, become_master());
	r = dput(1, 0, 0, 0, 0);
	if (r == 0)
		det_exit(3);	/* must not exist */
	EXPECT_EQ(-EPERM, r);
}

static volatile unsigned long vvar_addr;

static void read_vvar(void)
{
	(void)*(volatile unsigned char *)vvar_addr;
	for (;;)
		dret();
}

/* A master that moved its vDSO text: the child still has no vvar. */
TEST(moved_vdso_still_dropped)
{
	unsigned long vs, ve, ts, te;
	struct det_status st;
	void *to;
	long r;

	ASSERT_TRUE(find_map("[vvar]", &vs, &ve));
	ASSERT_TRUE(find_map("[vdso]", &ts, &te));
	to = mmap(NULL, (te - ts) + (16UL << 20), PROT_NONE,
		  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, to);
	to = (char *)to + (8UL << 20);
	ASSERT_EQ(to, mremap((void *)ts, te - ts, te - ts,
			     MREMAP_MAYMOVE | MREMAP_FIXED, to));
	vvar_addr = vs;
	ASSERT_EQ(0, become_master());
	r = dput(1, 0, 0, 0, 0);
	if (r == 0)
		read_vvar();
	ASSERT_EQ(DET_S_RUNNING, dput(1, DET_START, 0, 0, 0));
	EXPECT_EQ(DET_S_EXCEPT, det_status(1, &st));
	EXPECT_EQ(SIGSEGV, st.signo);
	EXPECT_EQ(vs, st.addr);
}

TEST_HARNESS_MAIN
