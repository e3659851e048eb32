package dev.ferry.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SizesTest {

    @Test
    void parsesQemuStyleSizes() {
        assertEquals(512L << 20, Sizes.parse("512M"));
        assertEquals(1L << 30, Sizes.parse("1G"));
        assertEquals(4L << 30, Sizes.parse("4GiB"));
        assertEquals(4L << 30, Sizes.parse("4gb"));
        assertEquals(4096, Sizes.parse("4096"));
        assertEquals(2048, Sizes.parse(" 2k "));
        assertEquals(1L << 40, Sizes.parse("1T"));
        assertEquals(64L << 20, Sizes.parse("64MiB"));
    }

    @ParameterizedTest
    @ValueSource(strings = {"12X", "", "M", "-1M", "1.5G", "G1", "9999999999999T", "ten"})
    void refusesWhatIsNotASize(String text) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Sizes.parse(text));
        assertTrue(e.getMessage().contains("'" + text + "' is not a size"), e.getMessage());
    }

    @Test
    void formats() {
        assertEquals("1 GiB", Sizes.format(1L << 30));
        assertEquals("512 MiB", Sizes.format(512L << 20));
        assertEquals("1.5 GiB", Sizes.format(3L << 29));
        assertEquals("100 B", Sizes.format(100));
        assertEquals("12 KiB", Sizes.format(12 << 10));
    }
}
