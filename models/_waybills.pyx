# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled core of `models.packed.WaybillColumn`: the waybill -> row hash index and the
packed waybill slots it confirms matches against. Python would need a `str` and a dict
entry per parcel (about 130 bytes); here a parcel costs its slot, its 8-byte hash and about
two 12-byte index entries, at the speed of a dict lookup."""

from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport int32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy, memset

import numpy as np

cdef int32_t EMPTY = -1
cdef int32_t DELETED = -2


cdef inline uint64_t waybill_hash(const char* data, Py_ssize_t size) noexcept nogil:
    """FNV-1a over the UTF-8 bytes, then splitmix64's finaliser so the low bits (the table
    slot) depend on every byte. The same in every process and on every restart."""
    cdef uint64_t h = 14695981039346656037ULL
    cdef Py_ssize_t i
    for i in range(size):
        h ^= <unsigned char>data[i]
        h *= 1099511628211ULL
    h ^= h >> 30
    h *= 0xBF58476D1CE4E5B9ULL
    h ^= h >> 27
    h *= 0x94D049BB133111EBULL
    h ^= h >> 31
    return h


cdef class WaybillSlots:
    """One waybill per row in `width`-byte slots (zero-padded; an all-zero slot is empty),
    waybills that do not fit (too long, or holding a NUL) in `long`, and the index."""

    cdef readonly Py_ssize_t width
    cdef public bytearray slots
    cdef public dict long
    cdef uint64_t[::1] keys
    cdef int32_t[::1] table
    cdef uint64_t[::1] hashes
    cdef Py_ssize_t mask, used

    def __init__(self, Py_ssize_t width=24, bytearray slots=None, dict long=None):
        self.width = width
        self.slots = bytearray() if slots is None else slots
        self.long = {} if long is None else long
        self.hashes = np.zeros(max(16, len(self.slots) // width), dtype=np.uint64)
        self._allocate(1024)
        self._reindex()

    def __reduce__(self):
        # The index is rebuilt from the slots: it is not worth its bytes in a snapshot.
        return WaybillSlots, (self.width, self.slots, self.long)

    @property
    def rows(self) -> int:
        return len(self.slots) // self.width

    def grow(self, Py_ssize_t rows):
        """Room for `rows` rows; new rows are empty."""
        cdef Py_ssize_t missing = rows * self.width - len(self.slots)
        if missing > 0:
            self.slots.extend(bytes(missing))
        if rows > self.hashes.shape[0]:
            grown = np.zeros(max(rows, 2 * self.hashes.shape[0]), dtype=np.uint64)
            grown[:self.hashes.shape[0]] = self.hashes
            self.hashes = grown

    cpdef Py_ssize_t find(self, str waybill):
        """The waybill's row, or -1."""
        cdef Py_ssize_t size, slot
        cdef const char* data = PyUnicode_AsUTF8AndSize(waybill, &size)
        cdef uint64_t key = waybill_hash(data, size)
        cdef int32_t row
        slot = key & self.mask
        while True:
            row = self.table[slot]
            if row == EMPTY:
                return -1
            if row >= 0 and self.keys[slot] == key and self._holds(row, waybill, data, size):
                return row
            slot = (slot + 1) & self.mask

    cdef bint _holds(self, int32_t row, str waybill, const char* data, Py_ssize_t size):
        cdef const char* stored
        if self._fits(data, size):
            stored = PyByteArray_AS_STRING(self.slots) + row * self.width
            return memcmp(stored, data, size) == 0 and (size == self.width or stored[size] == 0)
        return self.long.get(row) == waybill

    cdef inline bint _fits(self, const char* data, Py_ssize_t size):
        return 0 < size <= self.width and memchr(data, 0, size) == NULL

    def add(self, str waybill, Py_ssize_t row):
        """Put a waybill that is not indexed yet in an empty row."""
        cdef Py_ssize_t size
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} is not allocated (grow first)")
        cdef const char* data = PyUnicode_AsUTF8AndSize(waybill, &size)
        if self._fits(data, size):
            memcpy(PyByteArray_AS_STRING(self.slots) + row * self.width, data, size)
        else:
            self.long[row] = waybill
        cdef uint64_t key = waybill_hash(data, size)
        self.hashes[row] = key
        if (self.used + 1) * 2 > self.mask + 1:
            self._rebuild(self._live() + 1)
        self._place(key, <int32_t>row)

    def remove(self, Py_ssize_t row):
        """Empty a row and drop it from the index."""
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} is not allocated")
        cdef Py_ssize_t slot = self.hashes[row] & self.mask
        while self.table[slot] != row:
            if self.table[slot] == EMPTY:
                raise KeyError(f"row {row} holds no waybill")
            slot = (slot + 1) & self.mask
        self.table[slot] = DELETED
        memset(PyByteArray_AS_STRING(self.slots) + row * self.width, 0, self.width)
        self.long.pop(row, None)

    def get(self, Py_ssize_t row):
        """The row's waybill, or None."""
        if row in self.long:
            return self.long[row]
        value = bytes(self.slots[row * self.width:(row + 1) * self.width]).rstrip(b"\0")
        return value.decode() if value else None

    cdef void _place(self, uint64_t key, int32_t row):
        cdef Py_ssize_t slot = key & self.mask
        while self.table[slot] >= 0:
            slot = (slot + 1) & self.mask
        if self.table[slot] == EMPTY:
            self.used += 1
        self.keys[slot] = key
        self.table[slot] = row

    cdef void _allocate(self, Py_ssize_t capacity):
        self.keys = np.zeros(capacity, dtype=np.uint64)
        self.table = np.full(capacity, EMPTY, dtype=np.int32)
        self.mask = capacity - 1
        self.used = 0

    cdef Py_ssize_t _live(self):
        cdef Py_ssize_t slot, live = 0
        for slot in range(self.mask + 1):
            if self.table[slot] >= 0:
                live += 1
        return live

    cdef void _rebuild(self, Py_ssize_t live):
        """A table at most a third full, without DELETED slots."""
        cdef Py_ssize_t capacity = 1024, slot
        while live * 3 > capacity:
            capacity *= 2
        old_keys, old_table = self.keys, self.table
        cdef uint64_t[::1] keys = old_keys
        cdef int32_t[::1] table = old_table
        self._allocate(capacity)
        for slot in range(table.shape[0]):
            if table[slot] >= 0:
                self._place(keys[slot], table[slot])

    cdef void _reindex(self):
        """Index every non-empty row of the slots and of `long` (after a restore)."""
        cdef Py_ssize_t row, rows = len(self.slots) // self.width, size
        cdef const char* base = PyByteArray_AS_STRING(self.slots)
        cdef const char* stored
        cdef const char* data
        self.grow(rows)
        for row in range(rows):
            stored = base + row * self.width
            size = 0
            while size < self.width and stored[size] != 0:
                size += 1
            if size:
                self._index_restored(row, waybill_hash(stored, size))
        for row, waybill in self.long.items():
            data = PyUnicode_AsUTF8AndSize(waybill, &size)
            self._index_restored(row, waybill_hash(data, size))

    cdef void _index_restored(self, Py_ssize_t row, uint64_t key):
        self.hashes[row] = key
        if (self.used + 1) * 2 > self.mask + 1:
            self._rebuild(self.used + 1)
        self._place(key, <int32_t>row)


def seen_before(unsigned long long[::1] recent, Py_ssize_t row, str event_id,
                Py_ssize_t per_row):
    """True if `event_id` is among the row's `per_row` most recent event fingerprints (64-bit,
    nonzero; 0 marks an empty slot); otherwise it becomes the newest and the oldest falls off."""
    cdef Py_ssize_t size, i
    cdef const char* data = PyUnicode_AsUTF8AndSize(event_id, &size)
    cdef unsigned long long fp = waybill_hash(data, size)
    cdef Py_ssize_t base = row * per_row
    if fp == 0:
        fp = 1
    if row < 0 or base + per_row > recent.shape[0]:
        raise IndexError(f"row {row} is outside the fingerprints")
    for i in range(per_row):
        if recent[base + i] == fp:
            return True
    for i in range(per_row - 1, 0, -1):
        recent[base + i] = recent[base + i - 1]
    recent[base] = fp
    return False
