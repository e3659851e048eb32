package dev.ferry.vmstate;

/**
 * The little JSON the description needs: objects of strings, integers and nested values, written
 * in order. Names and strings are escaped; nothing else is formatted.
 */
final class Json {

    private final StringBuilder sb = new StringBuilder();
    private boolean first = true;

    Json begin() {
        sep();
        sb.append('{');
        first = true;
        return this;
    }

    Json begin(String key) {
        key(key);
        sb.append('{');
        first = true;
        return this;
    }

    Json end() {
        sb.append('}');
        first = false;
        return this;
    }

    Json beginArray(String key) {
        key(key);
        sb.append('[');
        first = true;
        return this;
    }

    Json endArray() {
        sb.append(']');
        first = false;
        return this;
    }

    Json str(String key, String value) {
        key(key);
        quote(value);
        return this;
    }

    Json num(String key, long value) {
        key(key);
        sb.append(value);
        return this;
    }

    /** Appends an already-rendered JSON value. */
    Json raw(String rendered) {
        sep();
        sb.append(rendered);
        return this;
    }

    private void key(String key) {
        sep();
        quote(key);
        sb.append(": ");
    }

    private void sep() {
        if (!first) {
            sb.append(", ");
        }
        first = false;
    }

    private void quote(String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                default -> {
                    if (c < 0x20) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
                }
            }
        }
        sb.append('"');
    }

    @Override
    public String toString() {
        return sb.toString();
    }
}
