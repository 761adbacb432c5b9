"""The paper's bAbI results that ours are drawn beside (Sukhbaatar et al. 2015, Table 1)."""

from __future__ import annotations

# Test error % per task of MemN2N "PE LS RN", trained jointly on the 1k set: mean 12.4, 11 failed.
JOINT_1K_ERROR: dict[int, float] = {
    1: 0.0, 2: 11.4, 3: 21.9, 4: 13.4, 5: 14.4, 6: 2.8, 7: 18.3, 8: 9.3, 9: 1.9, 10: 6.5,
    11: 0.3, 12: 0.1, 13: 0.2, 14: 6.9, 15: 0.0, 16: 2.7, 17: 40.4, 18: 9.4, 19: 88.0, 20: 0.0,
}  # fmt: skip
