package org.fhirso.reference;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.io.PrintStream;
import java.io.Writer;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;

import com.google.gson.stream.JsonWriter;

import org.hl7.fhir.r5.elementmodel.Manager.FhirFormat;
import org.hl7.fhir.r5.model.StructureDefinition;
import org.hl7.fhir.r5.utils.validation.constants.ReferenceValidationPolicy;
import org.hl7.fhir.utilities.FhirPublication;
import org.hl7.fhir.utilities.http.ManagedWebAccess;
import org.hl7.fhir.utilities.npm.CommonPackages;
import org.hl7.fhir.utilities.validation.ValidationMessage;
import org.hl7.fhir.validation.IgLoader;
import org.hl7.fhir.validation.ValidationEngine;
import org.hl7.fhir.validation.instance.InstanceValidator;
import org.hl7.fhir.validation.instance.advisor.BasePolicyAdvisorForFullValidation;
import org.hl7.fhir.validation.service.model.InstanceValidatorParameters;

/**
 * fhir-so's reference validator: the HL7 FHIR validator engine, offline, over many inputs in one JVM start.
 *
 * <pre>
 * java -Xmx2g -jar fhir-so-reference.jar [-ig NAME#VERSION|PATH]... [-profile URL]... [-cache DIR]
 *      [-output DIR] [-stats FILE] INPUT...
 * </pre>
 *
 * An INPUT is a .json or .xml resource file, an .ndjson file (one input per line) or a folder (its .json, .xml and
 * .ndjson files, recursively, in name order). For each input it writes one JSON object {@code {"input", "line"?,
 * "issues": [{"severity", "location", "line", "col", "message", "messageId", "type"}]}}: one line each on stdout,
 * or one file each in -output DIR. Exit 0 when every input was read and validated, whatever the verdicts (read the
 * issues); exit 2 on a usage or setup error (bad option, missing input, package or profile not available offline).
 *
 * <p>Offline: web access prohibited, no terminology server, packages only from the cache (see {@link PackageView}
 * and {@link OfflinePackages}), example URLs (example.org) allowed. Otherwise the engine runs with the HL7 CLI's
 * defaults (references to other resources not resolved, unknown extensions as the CLI reports them).
 */
public final class Main {

    static final String CORE = "hl7.fhir.r4.core#4.0.1";
    static final String USAGE = "usage: java -jar fhir-so-reference.jar [-ig NAME#VERSION|PATH]... [-profile URL]... "
            + "[-cache DIR] [-output DIR] [-stats FILE] INPUT...";

    /** A usage or setup error: one message, exit 2. */
    static final class UsageError extends Exception {
        UsageError(String message) {
            super(message);
        }
    }

    /** The parsed command line. */
    record Options(List<String> igs, List<String> profiles, Path cache, Path output, Path stats, List<Path> inputs) {

        static Options parse(String[] args) throws UsageError {
            List<String> igs = new ArrayList<>();
            List<String> profiles = new ArrayList<>();
            Path cache = Path.of(System.getProperty("user.home"), ".fhir", "packages");
            Path output = null;
            Path stats = null;
            List<Path> inputs = new ArrayList<>();
            for (int i = 0; i < args.length; i++) {
                String a = args[i];
                if (a.startsWith("-") && !a.equals("-")) {
                    if (a.equals("-h") || a.equals("-help") || a.equals("--help")) {
                        throw new UsageError(USAGE);
                    }
                    if (i + 1 >= args.length) {
                        throw new UsageError("option " + a + " needs a value; " + USAGE);
                    }
                    String v = args[++i];
                    switch (a) {
                        case "-ig" -> igs.add(v);
                        case "-profile" -> profiles.add(v);
                        case "-cache" -> cache = Path.of(v);
                        case "-output" -> output = Path.of(v);
                        case "-stats" -> stats = Path.of(v);
                        default -> throw new UsageError("unknown option " + a + "; " + USAGE);
                    }
                } else {
                    inputs.add(Path.of(a));
                }
            }
            if (inputs.isEmpty()) {
                throw new UsageError("no input files; " + USAGE);
            }
            if (!Files.isDirectory(cache)) {
                throw new UsageError("the package cache " + cache + " is not a folder (fill it with `fhir-so packages seed`)");
            }
            return new Options(igs, profiles, cache, output, stats, inputs);
        }
    }

    /** One thing to validate: a file, or a line of an NDJSON file. */
    record Input(Path file, int line, byte[] content, FhirFormat format) {
    }

    private Main() {
    }

    public static void main(String[] args) {
        // Before any class of the engine logs: its libraries log through slf4j-simple, to stderr, warnings only.
        System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", System.getProperty("reference.log", "warn"));
        System.setProperty("org.slf4j.simpleLogger.logFile", "System.err");
        PrintStream stdout = System.out;
        System.setOut(System.err); // whatever the engine prints must not mix with the outcomes on stdout
        int code;
        try {
            code = run(Options.parse(args), stdout);
        } catch (UsageError e) {
            System.err.println("reference: " + e.getMessage());
            code = 2;
        } catch (Exception | Error e) { // a setup failure of the engine: one line, not a trace
            System.err.println("reference: " + e.getClass().getSimpleName() + ": " + e.getMessage());
            code = 2;
        }
        stdout.flush();
        System.exit(code);
    }

    static int run(Options opts, PrintStream stdout) throws Exception {
        List<Input> inputs = readInputs(opts.inputs());
        ManagedWebAccess.setAccessPolicy(ManagedWebAccess.WebAccessPolicy.PROHIBITED);
        try (PackageView view = PackageView.create(opts.cache())) {
            if (!view.has("hl7.fhir.r4.core", "4.0.1")) {
                throw new UsageError(CORE + " is not in the package cache " + opts.cache() + " (fill it with `fhir-so packages seed`)");
            }
            for (String ig : opts.igs()) {
                int hash = ig.indexOf('#');
                if (hash > 0 && !Files.exists(Path.of(ig)) && !view.has(ig.substring(0, hash), ig.substring(hash + 1))) {
                    throw new UsageError("package " + ig + " is not in the package cache " + opts.cache()
                            + " (install it with `fhir-so packages install " + ig + "`)");
                }
                if (hash < 0 && !Files.exists(Path.of(ig))) {
                    throw new UsageError("-ig " + ig + ": give NAME#VERSION or an existing file or folder");
                }
            }
            if (!view.has(CommonPackages.ID_XVER, CommonPackages.VER_XVER)) {
                // The engine loads the cross-version extensions on every start and stops when they are missing.
                view.addStub(CommonPackages.ID_XVER, CommonPackages.VER_XVER, "loaded by every engine start, not needed offline");
            }
            System.setProperty("user.home", view.home().toString()); // the engine's package manager reads the view

            InstanceValidatorParameters params = new InstanceValidatorParameters()
                    .setAllowExampleUrls(true)
                    .setProfiles(opts.profiles());
            ValidationEngine engine = new ValidationEngine.ValidationEngineBuilder()
                    .withVersion("4.0.1")
                    .withUserAgent("fhir-so-reference")
                    .withNoTerminologyServer()
                    .withDefaultInstanceValidatorParameters(params)
                    .fromSource(CORE);
            engine.setTerminologyServer(null, null, FhirPublication.R4, false);
            OfflinePackages packages = new OfflinePackages(engine.getPcm(), view, System.err);
            engine.setIgLoader(new IgLoader(packages, engine.getContext(), engine.getVersion(), false));
            for (String ig : opts.igs()) {
                engine.getIgLoader().loadIg(engine.getIgs(), engine.getBinaries(), ig, false);
            }
            // As the HL7 CLI without -check-references, minus its registry look-ups for unknown canonical URLs.
            engine.setPolicyAdvisor(new BasePolicyAdvisorForFullValidation(ReferenceValidationPolicy.IGNORE, new HashSet<>()));
            engine.prepare();
            List<StructureDefinition> profiles = new ArrayList<>();
            for (String url : opts.profiles()) {
                StructureDefinition sd = engine.getContext().fetchResource(StructureDefinition.class, url);
                if (sd == null) {
                    throw new UsageError("profile " + url + " is not defined by the loaded packages (add its package with -ig)");
                }
                profiles.add(sd);
            }
            double readySeconds = ManagementFactory.getRuntimeMXBean().getUptime() / 1000.0;
            double readyCpu = processCpuSeconds();

            if (opts.output() != null) {
                Files.createDirectories(opts.output());
            }
            Set<String> usedNames = new HashSet<>();
            for (Input input : inputs) {
                List<ValidationMessage> messages = validate(engine, params, profiles, input);
                if (opts.output() == null) {
                    Writer w = new OutputStreamWriter(stdout, StandardCharsets.UTF_8);
                    writeOutcome(w, input, messages);
                    w.write('\n');
                    w.flush();
                } else {
                    Path target = opts.output().resolve(outputName(input, usedNames));
                    try (Writer w = Files.newBufferedWriter(target, StandardCharsets.UTF_8)) {
                        writeOutcome(w, input, messages);
                    }
                }
            }
            double doneSeconds = ManagementFactory.getRuntimeMXBean().getUptime() / 1000.0;
            double doneCpu = processCpuSeconds();
            if (opts.stats() != null) {
                Map<String, Object> stats = new LinkedHashMap<>();
                stats.put("inputs", inputs.size());
                stats.put("startSeconds", readySeconds);
                stats.put("startCpuSeconds", readyCpu);
                stats.put("validateSeconds", doneSeconds - readySeconds);
                stats.put("validateCpuSeconds", doneCpu - readyCpu);
                stats.put("packages", engine.getContext().getLoadedPackages());
                stats.put("substitutions", new ArrayList<>(packages.substitutions()));
                try (Writer w = Files.newBufferedWriter(opts.stats(), StandardCharsets.UTF_8)) {
                    writeJson(w, stats);
                }
            }
        }
        return 0;
    }

    static double processCpuSeconds() {
        var os = ManagementFactory.getOperatingSystemMXBean();
        if (os instanceof com.sun.management.OperatingSystemMXBean sun) {
            return sun.getProcessCpuTime() / 1e9; // all threads: JIT and GC included, as a user pays for them
        }
        return Double.NaN;
    }

    /** Expand folders and NDJSON files into inputs, reading every file once, up front (a missing file is exit 2). */
    static List<Input> readInputs(List<Path> paths) throws UsageError, IOException {
        List<Input> inputs = new ArrayList<>();
        for (Path p : paths) {
            if (Files.isDirectory(p)) {
                try (Stream<Path> walk = Files.walk(p)) {
                    for (Path f : walk.filter(Files::isRegularFile).filter(Main::isInputFile).sorted().toList()) {
                        addFile(inputs, f);
                    }
                }
            } else if (Files.isRegularFile(p)) {
                addFile(inputs, p);
            } else {
                throw new UsageError("no such file or folder: " + p);
            }
        }
        return inputs;
    }

    private static boolean isInputFile(Path f) {
        String n = f.getFileName().toString().toLowerCase(Locale.ROOT);
        return !n.startsWith(".") && (n.endsWith(".json") || n.endsWith(".xml") || n.endsWith(".ndjson"));
    }

    private static void addFile(List<Input> inputs, Path f) throws IOException {
        String n = f.getFileName().toString().toLowerCase(Locale.ROOT);
        byte[] content = Files.readAllBytes(f);
        if (n.endsWith(".ndjson")) {
            String[] lines = new String(content, StandardCharsets.UTF_8).split("\n", -1);
            for (int i = 0; i < lines.length; i++) {
                if (!lines[i].isBlank()) {
                    inputs.add(new Input(f, i + 1, lines[i].getBytes(StandardCharsets.UTF_8), FhirFormat.JSON));
                }
            }
        } else {
            inputs.add(new Input(f, 0, content, n.endsWith(".xml") ? FhirFormat.XML : FhirFormat.JSON));
        }
    }

    /** The engine's messages for one input, duplicates removed; an engine failure becomes one fatal issue. */
    static List<ValidationMessage> validate(ValidationEngine engine, InstanceValidatorParameters params,
                                            List<StructureDefinition> profiles, Input input) {
        List<ValidationMessage> messages = new ArrayList<>();
        try {
            InstanceValidator validator = engine.getValidator(input.format(), params);
            validator.validate(null, messages, new ByteArrayInputStream(input.content()), input.format(), profiles);
        } catch (Exception | StackOverflowError e) {
            messages.add(new ValidationMessage(ValidationMessage.Source.InstanceValidator, ValidationMessage.IssueType.EXCEPTION,
                    "", "the validator failed: " + e.getClass().getSimpleName() + ": " + e.getMessage(),
                    ValidationMessage.IssueSeverity.FATAL));
        }
        List<ValidationMessage> unique = new ArrayList<>();
        Set<String> seen = new HashSet<>();
        for (ValidationMessage m : messages) {
            if (seen.add(m.getLevel() + "|" + m.getLocation() + "|" + m.getMessage())) {
                unique.add(m);
            }
        }
        return unique;
    }

    static void writeOutcome(Writer out, Input input, List<ValidationMessage> messages) throws IOException {
        JsonWriter w = new JsonWriter(out);
        w.setHtmlSafe(false);
        w.beginObject();
        w.name("input").value(input.file().toString());
        if (input.line() > 0) {
            w.name("line").value(input.line());
        }
        w.name("issues").beginArray();
        for (ValidationMessage m : messages) {
            w.beginObject();
            w.name("severity").value(m.getLevel() == null ? "error" : m.getLevel().toCode());
            w.name("location").value(m.getLocation());
            if (m.getLine() > 0) {
                w.name("line").value(m.getLine());
                w.name("col").value(m.getCol());
            }
            w.name("message").value(m.getMessage());
            if (m.getMessageId() != null) {
                w.name("messageId").value(m.getMessageId());
            }
            if (m.getType() != null) {
                w.name("type").value(m.getType().toCode());
            }
            w.endObject();
        }
        w.endArray();
        w.endObject();
        w.flush();
    }

    private static String outputName(Input input, Set<String> used) {
        String base = input.file().getFileName().toString().replaceAll("\\.(json|xml|ndjson)$", "");
        String name = input.line() > 0 ? base + "." + input.line() : base;
        String candidate = name + ".outcome.json";
        for (int i = 2; !used.add(candidate); i++) {
            candidate = name + "." + i + ".outcome.json";
        }
        return candidate;
    }

    @SuppressWarnings("unchecked")
    private static void writeJson(Writer out, Map<String, Object> map) throws IOException {
        JsonWriter w = new JsonWriter(out);
        w.setIndent("  ");
        w.beginObject();
        for (Map.Entry<String, Object> e : map.entrySet()) {
            w.name(e.getKey());
            Object v = e.getValue();
            if (v instanceof Number n) {
                w.value(n);
            } else if (v instanceof List<?> l) {
                w.beginArray();
                for (Object o : l) {
                    w.value(String.valueOf(o));
                }
                w.endArray();
            } else {
                w.value(String.valueOf(v));
            }
        }
        w.endObject();
        w.flush();
    }
}
