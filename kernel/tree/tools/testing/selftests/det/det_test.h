/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kselftest harness plus the det helpers.  The harness's test wrappers
 * (expanded in every test file) have parameters they do not use, and the
 * suite is built with -Wextra -Werror, so the warning is off for test files.
 */
#ifndef DET_TEST_H
#define DET_TEST_H

#pragma GCC diagnostic ignored "-Wunused-parameter"
/* ASSERT_EQ(DET_S_READY, st.status) compares int with __u32. */
#pragma GCC diagnostic ignored "-Wsign-compare"
#include "kselftest_harness.h"
#include "det_util.h"

/*
 * Time limits catch hangs, not slowness.  Each test's limit (the harness's
 * 30 s, or a SLOW_TEST's own, both sized for an idle host and the test
 * kernel) is multiplied by DET_TIME_SCALE, the speed factor init measures
 * at boot (>= 1: how much slower this guest is than that reference, from
 * host load, TCG and debug options alike).  TEST_HARNESS_MAIN is redefined
 * so that every test program scales its limits before the first test.
 */
FIXTURE(slow) {};
FIXTURE_SETUP(slow) {}
FIXTURE_TEARDOWN(slow) {}
#define SLOW_TEST(name, seconds) TEST_F_TIMEOUT(slow, name, seconds)

static inline void det_scale_time_limits(void)
{
	const char *env = getenv("DET_TIME_SCALE");
	double scale = env ? strtod(env, NULL) : 1.0;
	struct __fixture_metadata *f;
	struct __test_metadata *t;

	if (!(scale >= 1.0) || scale > 1000.0)
		scale = 1.0;
	for (f = __fixture_list; f; f = f->next)
		for (t = f->tests; t; t = t->next)
			t->timeout = (int)(t->timeout * scale + 0.999);
}

#undef TEST_HARNESS_MAIN
#define TEST_HARNESS_MAIN \
	int main(int argc, char **argv) \
	{ \
		det_scale_time_limits(); \
		return test_harness_run(argc, argv); \
	}

#endif /* DET_TEST_H */
