package org.fhirso.reference;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

import org.hl7.fhir.exceptions.FHIRException;
import org.hl7.fhir.utilities.npm.FilesystemPackageCacheManager;
import org.hl7.fhir.utilities.npm.IPackageCacheManager;
import org.hl7.fhir.utilities.npm.NpmPackage;

/**
 * The engine's package source offline: the package cache view only, never a registry.
 *
 * <p>Implementation guides name exact dependency versions that are often not published where their own package
 * is (IPS 2.0.0 asks for hl7.terminology.r4 6.5.0 and hl7.fhir.uv.extensions.r4 5.2.0; the npm registry has 7.0.1
 * and 5.3.0-ballot-tc1). A missing version is replaced by the nearest version in the cache, with a warning, as
 * fhir-so's installer does; a package with no version at all becomes an empty stub, with a warning, so the engine
 * validates with what it has instead of stopping.
 */
final class OfflinePackages implements IPackageCacheManager {

    private final FilesystemPackageCacheManager cache;
    private final PackageView view;
    private final PrintStream log;
    private final Set<String> warned = new LinkedHashSet<>();
    private final Map<String, String> loaded = new HashMap<>();

    OfflinePackages(FilesystemPackageCacheManager cache, PackageView view, PrintStream log) {
        this.cache = cache;
        this.view = view;
        this.log = log;
    }

    /** The packages that were replaced or stubbed, for the run's summary. */
    Set<String> substitutions() {
        return warned;
    }

    @Override
    public NpmPackage loadPackage(String idAndVersion) throws FHIRException, IOException {
        int hash = idAndVersion.indexOf('#');
        return hash < 0 ? loadPackage(idAndVersion, null) : loadPackage(idAndVersion.substring(0, hash), idAndVersion.substring(hash + 1));
    }

    @Override
    public NpmPackage loadPackage(String id, String version) throws FHIRException, IOException {
        if (version == null && id.contains("#")) { // "id#version" passed as the id by some callers
            return loadPackage(id);
        }
        String actual = resolve(id, version);
        String first = loaded.putIfAbsent(id, actual == null ? "(none)" : actual);
        if (first != null) {
            // Packages refer back to each other across versions (terminology -> extensions -> terminology), and
            // the engine loads a package's dependencies before it records the package as loaded: one version of
            // each package is loaded, any later request gets an empty stub, which ends the chain.
            return view.stub(id, version == null ? first : version, "already loaded as " + id + "#" + first);
        }
        if (actual == null) {
            note(id + "#" + (version == null ? "latest" : version) + " is not in the package cache (no version of it): "
                    + "loaded as an empty stub, its definitions are unknown to this run");
            return view.stub(id, version == null ? "0.0.0" : version, "no version of " + id + " in the package cache");
        }
        return cache.loadPackage(id, actual);
    }

    /** The version to load for id#version: itself when in the cache, else the nearest one (noted), else null. */
    String resolve(String id, String version) throws IOException {
        if (version != null && view.has(id, version)) {
            return version;
        }
        String chosen = Versions.nearest(version == null ? "999999" : version, view.versions(id));
        if (chosen != null && version != null) {
            note(id + "#" + version + " is not in the package cache: using " + id + "#" + chosen);
        }
        return chosen;
    }

    private void note(String message) {
        if (warned.add(message)) {
            log.println("reference: warning: " + message);
        }
    }

    @Override
    public NpmPackage loadPackageFromCacheOnly(String idAndVersion) throws IOException {
        return loadPackage(idAndVersion);
    }

    @Override
    public NpmPackage loadPackageFromCacheOnly(String id, String version) throws IOException {
        return loadPackage(id, version);
    }

    @Override
    public String getLatestVersion(String id, boolean milestonesOnly) throws IOException {
        return Versions.nearest("999999", view.versions(id));
    }

    @Override
    public String getLatestVersion(String id, String versionFilter) throws IOException {
        return Versions.nearest("999999", view.versions(id));
    }

    /** Offline: which package holds a canonical URL cannot be asked of a registry. */
    @Override
    public String getPackageId(String canonicalUrl) {
        return null;
    }

    @Override
    public String getPackageUrl(String packageId) {
        return null;
    }

    @Override
    public NpmPackage addPackageToCache(String id, String version, InputStream packageTgzInputStream, String sourceDesc) {
        throw new FHIRException("the reference validator runs offline and never installs packages (" + id + "#" + version
                + " from " + sourceDesc + "); install it with `fhir-so packages install`");
    }
}
