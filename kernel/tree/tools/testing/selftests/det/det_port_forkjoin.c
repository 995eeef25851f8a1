// SPDX-License-Identifier: GPL-2.0
/*
 * Port of a v3.0-det DET_SNAP/DET_MERGE fork-join program (libdeterm's
 * user/merge.c behaviour, after PIOS; our own code): two children swap two
 * globals through snapshots; a parallel quicksort forks a child per half
 * and merges the array back; an 8x8 matrix product forks a child per cell.
 * As the original benchmarks join, the matrix join merges the program's
 * whole static image, [etext, end): read-only data, initialised data and
 * bss, pages every child read and no child wrote included.  What changed
 * for detlinux: nothing but DET_KILL's return value (read the status
 * first, docs/kernel.md "Porting from v3.0-det").
 */
#include "det_test.h"

extern char etext[], end[];

static unsigned long x, y;

static int nums[8] = { 20, 726, 926, 682, 210, 585, 829, 491 };
static const int sorted[8] = { 20, 210, 491, 585, 682, 726, 829, 926 };

static int ma[8][8] = {
	{ 146, 3, 189, 106, 239, 208, 8, 122 },
	{ 200, 225, 94, 74, 143, 3, 127, 59 },
	{ 32, 127, 52, 205, 0, 86, 143, 213 },
	{ 159, 135, 45, 198, 152, 70, 116, 234 },
	{ 238, 68, 215, 168, 79, 235, 15, 189 },
	{ 82, 160, 97, 132, 186, 1, 220, 48 },
	{ 178, 39, 153, 15, 16, 227, 251, 198 },
	{ 148, 1, 239, 153, 39, 137, 42, 161 },
};
static int mb[8][8] = {
	{ 75, 95, 165, 229, 14, 90, 222, 236 },
	{ 171, 131, 12, 84, 120, 147, 76, 69 },
	{ 235, 51, 255, 250, 222, 64, 9, 1 },
	{ 206, 7, 13, 120, 23, 137, 178, 81 },
	{ 57, 184, 224, 142, 22, 184, 3, 132 },
	{ 49, 30, 70, 28, 239, 52, 217, 13 },
	{ 217, 50, 44, 35, 216, 134, 49, 123 },
	{ 119, 13, 157, 196, 37, 87, 38, 126 },
};
static int mr[8][8];

/* DET_KILL returns 0 on detlinux: take the status first. */
static long join_kill(unsigned long id)
{
	long st = dget(id, DET_GET_STATUS, 0, 0, 0);

	return dput(id, DET_KILL, 0, 0, 0) ?: st;
}

TEST(swap_through_snapshots)
{
	ASSERT_EQ(0, become_master());
	x = 0xdeadbeef;
	y = 0xabadcafe;
	if (!dput(0, DET_START | DET_SNAP, 0, 0, 0)) {
		x = y;
		dret();
	}
	if (!dput(1, DET_START | DET_SNAP, 0, 0, 0)) {
		y = x;
		dret();
	}
	EXPECT_EQ(0xdeadbeef, x);
	EXPECT_EQ(0xabadcafe, y);
	ASSERT_LT(0, dget(0, DET_MERGE, (unsigned long)&x, sizeof(x), 0));
	ASSERT_LT(0, dget(1, DET_MERGE, (unsigned long)&y, sizeof(y), 0));
	EXPECT_EQ(0xabadcafe, x);
	EXPECT_EQ(0xdeadbeef, y);
	EXPECT_EQ(DET_S_READY, join_kill(0));
	EXPECT_EQ(DET_S_READY, join_kill(1));
}

/* Sort [lo, hi] with a child per half; 0 on success. */
static int pqsort(int *lo, int *hi)
{
	int pivot, *l, *h, t, bad = 0;

	if (lo >= hi)
		return 0;
	pivot = *lo;
	l = lo + 1;
	h = hi;
	while (l <= h) {
		if (*l < pivot) {
			l++;
		} else if (*h > pivot) {
			h--;
		} else {
			t = *h;
			*h = *l;
			*l = t;
			l++;
			h--;
		}
	}
	t = *lo;
	*lo = l[-1];
	l[-1] = t;
	if (!dput(0, DET_START | DET_SNAP, 0, 0, 0)) {
		if (pqsort(lo, l - 2))
			det_exit(1);
		dret();
	}
	if (!dput(1, DET_START | DET_SNAP, 0, 0, 0)) {
		if (pqsort(h + 1, hi))
			det_exit(1);
		dret();
	}
	bad |= dget(0, DET_MERGE, (unsigned long)nums, sizeof(nums), 0) !=
	       DET_S_READY;
	bad |= dget(1, DET_MERGE, (unsigned long)nums, sizeof(nums), 0) !=
	       DET_S_READY;
	bad |= join_kill(0) != DET_S_READY;
	bad |= join_kill(1) != DET_S_READY;
	return bad;
}

TEST(parallel_quicksort)
{
	ASSERT_EQ(0, become_master());
	ASSERT_EQ(0, pqsort(nums, nums + 7));
	EXPECT_EQ(0, memcmp(nums, sorted, sizeof(nums)));
}

TEST(matrix_product_joins_static_image)
{
	static const int want[8][8] = {
		{ 117783, 76846, 161301, 157610, 108012, 106677, 104090, 94046 },
		{ 133687, 87306, 107725, 133479, 85848, 115848, 85063, 110783 },
		{ 139159, 36263, 68482, 104757, 91270, 95127, 87477, 78517 },
		{ 151485, 75381, 122694, 156229, 86758, 131671, 111429, 127648 },
		{ 156375, 68452, 161574, 189491, 131222, 113401, 148992, 113825 },
		{ 147600, 80499, 100851, 115856, 98545, 123124, 68112, 98854 },
		{ 149128, 54805, 130652, 140309, 157630, 99208, 115657, 106951 },
		{ 136163, 42930, 132817, 154486, 107399, 83659, 100339, 80010 },
	};
	struct det_merge rep;
	int i, j, k;

	ASSERT_EQ(0, become_master());
	for (i = 0; i < 8; i++)
		for (j = 0; j < 8; j++) {
			if (dput(i * 8 + j, DET_START | DET_SNAP, 0, 0, 0))
				continue;
			mr[i][j] = 0;
			for (k = 0; k < 8; k++)
				mr[i][j] += ma[i][k] * mb[k][j];
			dret();
		}
	for (i = 0; i < 64; i++) {
		memset(&rep, 0xa5, sizeof(rep));
		ASSERT_EQ(DET_S_READY, dget(i, DET_MERGE, (unsigned long)etext,
					    end - etext, (unsigned long)&rep)) {
			TH_LOG("child %d: conflict at %#llx", i,
			       (unsigned long long)rep.conflict_addr);
		}
		/* One page changed per child: its cell of mr. */
		EXPECT_EQ(1, rep.copied_pages + rep.compared_pages);
		EXPECT_EQ(DET_S_READY, join_kill(i));
	}
	EXPECT_EQ(0, memcmp(mr, want, sizeof(mr)));
}

TEST_HARNESS_MAIN
