package dev.ferry.api;

/**
 * A range of guest-physical addresses.
 *
 * @param address the first byte
 * @param size    bytes, positive
 */
public record GuestRange(long address, long size) {

    public GuestRange {
        if (address < 0 || size <= 0 || address + size < address) {
            throw new IllegalArgumentException("bad guest range [" + address + ", +" + size + ")");
        }
    }

    /** @return one past the last byte */
    public long end() {
        return address + size;
    }

    /** @return whether {@code [address, address + length)} lies inside this range */
    public boolean contains(long address, long length) {
        return address >= this.address && length >= 0 && address + length <= end();
    }

    @Override
    public String toString() {
        return String.format("[0x%x, 0x%x)", address, end());
    }
}
