/*
 * cforkjoin: a C program against determ.h. Four children fill their
 * quarter of a heap array; the parent joins them in order and prints the
 * sum. A child's output arrives at its join, so the lines come out in
 * child order whatever the timing.
 */
#include <determ.h>

#define N 4000

static long *table;

static int fill(void *arg)
{
	long part = (long)(uintptr_t)arg;

	for (long i = part * (N / 4); i < (part + 1) * (N / 4); i++)
		table[i] = i * i;
	det_printf("child %ld filled %d entries\n", part, N / 4);
	return (int)part + 10;
}

int main(int argc, char **argv, char **envp)
{
	long sum = 0;
	int status, total = 0;

	(void)envp;
	table = calloc(N, sizeof(long));
	for (long c = 0; c < 4; c++) {
		if (det_fork((uint64_t)c + 1, fill, (void *)(uintptr_t)c) < 0) {
			det_printf("fork failed\n");
			return 1;
		}
	}
	for (long c = 0; c < 4; c++) {
		if (det_join((uint64_t)c + 1, &status) < 0) {
			char err[256];
			det_last_error(err, sizeof(err));
			det_printf("join failed: %s\n", err);
			return 1;
		}
		total += status;
	}
	for (long i = 0; i < N; i++)
		sum += table[i];
	det_printf("%s: argc %d, sum %ld, statuses %d\n", argv[0], argc, sum, total);
	return 0;
}
