package org.fhirso.reference;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;

import org.hl7.fhir.utilities.npm.NpmPackage;

/**
 * A private, throw-away package cache folder that shows the shared cache's packages file by file.
 *
 * <p>Why not point the HL7 package manager at the shared cache (~/.fhir/packages) directly: on start it deletes
 * the whole cache when its {@code packages.ini} names another cache version, deletes folders named like UUIDs and
 * packages that have a stale {@code .lock} file; and it writes an {@code .index.json} into every folder of a package
 * it loads (example/, other/, xml/), where fhir-so and SUSHI then take it for a resource. The view has folders of
 * its own and a symbolic link per file: files are read in place, whatever the engine writes stays in the view, and
 * the indexes are copies, so a rewrite never reaches the shared file. The stub packages the engine needs offline
 * (see {@link #addStub}) live only in the view, so fhir-so never mistakes them for real packages.
 */
final class PackageView implements AutoCloseable {

    private final Path shared;
    private final Path home;
    private final Path folder;
    private int stubs;

    private PackageView(Path shared, Path home) {
        this.shared = shared;
        this.home = home;
        this.folder = home.resolve(".fhir").resolve("packages");
    }

    /** Make a view of {@code shared} under a new temporary home folder. */
    static PackageView create(Path shared) throws IOException {
        PackageView view = new PackageView(shared.toAbsolutePath(), Files.createTempDirectory("fhir-so-reference-"));
        Files.createDirectories(view.folder);
        try (DirectoryStream<Path> entries = Files.newDirectoryStream(view.shared)) {
            for (Path entry : entries) {
                String name = entry.getFileName().toString();
                // NAME#VERSION folders only: no temporary folders of a running install (".name#version.xyz"), no files.
                if (name.startsWith(".") || !name.contains("#") || !Files.isDirectory(entry)) {
                    continue;
                }
                mirror(entry.toRealPath(), view.folder.resolve(name));
            }
        }
        return view;
    }

    /** Folders made, files linked, indexes copied: nothing the engine writes can reach the shared cache. */
    private static void mirror(Path source, Path target) throws IOException {
        try (Stream<Path> walk = Files.walk(source)) { // pre-order: a folder comes before its files
            for (Path p : (Iterable<Path>) walk::iterator) {
                Path t = target.resolve(source.relativize(p).toString());
                if (Files.isDirectory(p)) {
                    Files.createDirectories(t);
                } else if (p.getFileName().toString().startsWith(".index.")) {
                    Files.copy(p, t);
                } else if (Files.isRegularFile(p)) {
                    Files.createSymbolicLink(t, p);
                }
            }
        }
    }

    /** The home folder to give the engine (its package manager reads {@code user.home}/.fhir/packages). */
    Path home() {
        return home;
    }

    Path folder() {
        return folder;
    }

    Path shared() {
        return shared;
    }

    /** True when the view holds NAME#VERSION with a package.json. */
    boolean has(String name, String version) {
        return Files.isRegularFile(folder.resolve(name + "#" + version).resolve("package").resolve("package.json"));
    }

    /** The versions of a package the view holds, in ascending version order. */
    List<String> versions(String name) throws IOException {
        List<String> found = new ArrayList<>();
        String prefix = name + "#";
        try (DirectoryStream<Path> entries = Files.newDirectoryStream(folder)) {
            for (Path entry : entries) {
                String dir = entry.getFileName().toString();
                if (dir.startsWith(prefix) && Files.isRegularFile(entry.resolve("package").resolve("package.json"))) {
                    found.add(dir.substring(prefix.length()));
                }
            }
        }
        found.sort(Versions::compare);
        return found;
    }

    /**
     * A stub package (a package.json only) in the view: the engine loads the cross-version extensions on every
     * start and stops when they are missing, although nothing in them is needed to validate offline. Never over
     * anything that exists (a link to a shared package must not be written through).
     */
    void addStub(String name, String version, String why) throws IOException {
        Path dir = folder.resolve(name + "#" + version);
        if (Files.exists(dir, LinkOption.NOFOLLOW_LINKS)) {
            throw new IOException("will not make a stub over " + dir + ": it exists");
        }
        writeStub(dir, name, version, why);
    }

    /** An empty package loaded directly (outside the cache folder): see {@link OfflinePackages}. */
    NpmPackage stub(String name, String version, String why) throws IOException {
        Path dir = home.resolve("stubs").resolve(name + "#" + version + "#" + (stubs++));
        writeStub(dir, name, version, why);
        return NpmPackage.fromFolder(dir.toString());
    }

    private static void writeStub(Path dir, String name, String version, String why) throws IOException {
        Path pkg = dir.resolve("package");
        Files.createDirectories(pkg);
        String manifest = "{\n"
                + "  \"name\": \"" + name + "\",\n"
                + "  \"version\": \"" + version + "\",\n"
                + "  \"fhirVersions\": [\"4.0.1\"],\n"
                + "  \"description\": \"stub made by the fhir-so reference validator: " + why.replace("\"", "'") + "\",\n"
                + "  \"dependencies\": {}\n"
                + "}\n";
        Files.writeString(pkg.resolve("package.json"), manifest, StandardCharsets.UTF_8);
    }

    /** Remove the view: the links (never what they point to), its folders, stubs, indexes, lock and ini files. */
    @Override
    public void close() throws IOException {
        try (Stream<Path> walk = Files.walk(home)) { // walk does not follow links: only the view's own files
            for (Path p : walk.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p); // a link is deleted as a link
            }
        }
    }
}
