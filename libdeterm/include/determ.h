/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * determ.h - libdeterm for C: deterministic programs on detlinux.
 *
 * Build (no libc; libdeterm.a provides _start, memcpy & co, malloc):
 *
 *   gcc -static -nostdlib -ffreestanding -fno-pie -no-pie -O2 \
 *       -I<sdk>/include prog.c <sdk>/lib/libdeterm.a -o prog
 *   detrun ./prog args...
 *
 * The program defines main(argc, argv, envp) as usual.  Functions return 0
 * or a count on success and -errno on failure; det_last_error() gives the
 * text of the last failure (a merge conflict names the child and address,
 * and the symbol when the master can name it).
 *
 * Output written with det_write()/det_printf() reaches the terminal in an
 * order fixed by the program: a child's output arrives at its join.
 */
#ifndef DETERM_H
#define DETERM_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The kernel interface (include/uapi/linux/det.h), for reference. */
#define DET_NR_DPUT	1000
#define DET_NR_DGET	1001
#define DET_NR_DRET	1002

/* Errors returned (negated). */
#define DET_EBADE	52	/* merge conflict (memory or files) */
#define DET_EFAULT	14	/* the child faulted or panicked */
#define DET_ESRCH	3	/* no such child */

/* Process API. */
int det_fork(uint64_t id, int (*fn)(void *arg), void *arg);
int det_join(uint64_t id, int *status);
long det_exec(const char *path, const char *const argv[]);
size_t det_last_error(char *buf, size_t len);
void det_exit(int code) __attribute__((noreturn));

/* Standard input and output. */
long det_write(int fd, const void *buf, size_t len);
long det_read(void *buf, size_t len);

/* The in-memory file system (paths are absolute). */
long det_file_write(const char *path, uint64_t off, const void *buf, size_t len);
long det_file_append(const char *path, const void *buf, size_t len);
long det_file_read(const char *path, uint64_t off, void *buf, size_t len);
long det_file_size(const char *path);
int det_file_remove(const char *path);
int det_mkdir(const char *path);

/* The allocator (addresses are the same in every run). */
void *malloc(size_t n);
void *calloc(size_t n, size_t size);
void *realloc(void *p, size_t n);
void free(void *p);

/* Provided by libdeterm for the compiler. */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

/*
 * det_printf: a small printf to standard output: %d %i %u %x %s %c %% with
 * the l and ll length modifiers.  Header-only.
 */
static inline void det__out(char *buf, size_t *n, size_t cap, char c)
{
	if (*n == cap) {
		det_write(1, buf, *n);
		*n = 0;
	}
	buf[(*n)++] = c;
}

static inline int det_vprintf(const char *fmt, va_list ap)
{
	char buf[256], num[24];
	size_t n = 0, total = 0;

	for (; *fmt; fmt++) {
		int longs = 0, neg = 0, base = 10, len = 0;
		unsigned long long v = 0;
		const char *s;

		if (*fmt != '%') {
			det__out(buf, &n, sizeof(buf), *fmt);
			total++;
			continue;
		}
		fmt++;
		while (*fmt == 'l') {
			longs++;
			fmt++;
		}
		switch (*fmt) {
		case 'd':
		case 'i': {
			long long x = longs ? va_arg(ap, long long) : va_arg(ap, int);
			if (x < 0) {
				neg = 1;
				v = (unsigned long long)(-(x + 1)) + 1;
			} else {
				v = (unsigned long long)x;
			}
			break;
		}
		case 'x':
			base = 16;
			/* fall through */
		case 'u':
			v = longs ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned int);
			break;
		case 's':
			for (s = va_arg(ap, const char *); *s; s++, total++)
				det__out(buf, &n, sizeof(buf), *s);
			continue;
		case 'c':
			det__out(buf, &n, sizeof(buf), (char)va_arg(ap, int));
			total++;
			continue;
		case '%':
			det__out(buf, &n, sizeof(buf), '%');
			total++;
			continue;
		default:
			continue;
		}
		do {
			num[len++] = "0123456789abcdef"[v % base];
			v /= base;
		} while (v);
		if (neg)
			num[len++] = '-';
		while (len) {
			det__out(buf, &n, sizeof(buf), num[--len]);
			total++;
		}
	}
	if (n)
		det_write(1, buf, n);
	return (int)total;
}

static inline int det_printf(const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = det_vprintf(fmt, ap);
	va_end(ap);
	return r;
}

#ifdef __cplusplus
}
#endif

#endif /* DETERM_H */
