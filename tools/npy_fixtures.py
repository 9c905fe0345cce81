"""Writes the NumPy files that tests/suite/first_contact.rs reads back (`pip install numpy`, then
`python tools/npy_fixtures.py`). Each file holds arange(n) in its dtype and shape, so the
test knows every value without a second fixture; the layouts cover what np.save produces:
both byte orders, Fortran order, every integer width, bool and a 0-d array."""
import os
import numpy as np

out = os.path.join(os.path.dirname(__file__), "..", "crates", "gradtape", "tests", "fixtures", "npy")
os.makedirs(out, exist_ok=True)
cases = {
    "f32_c_2x3": np.arange(6, dtype="<f4").reshape(2, 3),
    "f64_fortran_2x3x2": np.asfortranarray(np.arange(12, dtype="<f8").reshape(2, 3, 2)),
    "i32_big_endian_4": np.arange(4, dtype=">i4"),
    "u8_2x2": np.arange(4, dtype="u1").reshape(2, 2),
    "i16_3": np.arange(3, dtype="<i2"),
    "i64_scalar": np.array(5, dtype="<i8"),
    "bool_3": np.array([True, False, True]),
    "f16_2": np.arange(2, dtype="<f2"),  # refused: gradtape has no float16
}
for name, a in cases.items():
    np.save(os.path.join(out, name + ".npy"), a)
print("wrote", len(cases), "files to", os.path.normpath(out))
