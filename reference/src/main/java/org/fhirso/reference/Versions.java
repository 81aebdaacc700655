package org.fhirso.reference;

import java.util.List;

/** Package version order (semver-like: numbers compared as numbers, a pre-release before its release). */
final class Versions {

    private Versions() {
    }

    static int compare(String a, String b) {
        String[] ma = a.split("-", 2);
        String[] mb = b.split("-", 2);
        String[] pa = ma[0].split("\\.");
        String[] pb = mb[0].split("\\.");
        for (int i = 0; i < Math.max(pa.length, pb.length); i++) {
            int c = comparePart(i < pa.length ? pa[i] : "0", i < pb.length ? pb[i] : "0");
            if (c != 0) {
                return c;
            }
        }
        if (ma.length != mb.length) {
            return ma.length == 1 ? 1 : -1; // 1.0.0 comes after 1.0.0-ballot
        }
        return ma.length == 1 ? 0 : ma[1].compareTo(mb[1]);
    }

    private static int comparePart(String a, String b) {
        boolean na = a.chars().allMatch(Character::isDigit) && !a.isEmpty();
        boolean nb = b.chars().allMatch(Character::isDigit) && !b.isEmpty();
        if (na && nb) {
            return Long.compare(Long.parseLong(a), Long.parseLong(b));
        }
        return na == nb ? a.compareTo(b) : (na ? 1 : -1);
    }

    /**
     * The available version nearest to the wanted one: the lowest at or above it, else the highest below it
     * (as the HL7 tools do offline, and as fhir-so's installer does). Stubs made for other tools come last.
     */
    static String nearest(String wanted, List<String> available) {
        String above = null;
        String below = null;
        for (String v : available) {
            if (v.contains("stub")) {
                continue;
            }
            if (compare(v, wanted) >= 0) {
                if (above == null || compare(v, above) < 0) {
                    above = v;
                }
            } else if (below == null || compare(v, below) > 0) {
                below = v;
            }
        }
        if (above != null) {
            return above;
        }
        if (below != null) {
            return below;
        }
        return available.isEmpty() ? null : available.get(available.size() - 1);
    }
}
