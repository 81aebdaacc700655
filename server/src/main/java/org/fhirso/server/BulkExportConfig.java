package org.fhirso.server;

import ca.uhn.fhir.batch2.api.IJobMaintenanceService;
import ca.uhn.fhir.batch2.jobs.export.BulkDataExportProvider;
import ca.uhn.fhir.batch2.maintenance.JobMaintenanceServiceImpl;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.rest.server.RestfulServer;
import jakarta.servlet.Filter;
import jakarta.servlet.FilterChain;
import jakarta.servlet.ServletException;
import jakarta.servlet.ServletRequest;
import jakarta.servlet.ServletResponse;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import jakarta.servlet.http.HttpServletResponseWrapper;
import java.io.IOException;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.web.servlet.FilterRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;

/**
 * FHIR Bulk Data export ({@code $export} at system, Patient and Group level, with
 * {@code $export-poll-status}), as HAPI's JPA starter wires it: the batch2 job framework and the
 * bulk export job come from {@code JpaBatch2Config} / {@code Batch2JobsConfig} (imported by
 * {@link Application}), the {@link BulkDataExportProvider} bean from HAPI's {@code JpaConfig};
 * this class mounts the provider on the REST server. The NDJSON files are stored as
 * {@code Binary} resources in the server's own database and served by the Binary provider.
 *
 * <p>Tuned for a local server, where an export of a few thousand resources should take seconds:
 * <ul>
 *   <li>the batch2 maintenance pass, which moves a job from one step to the next, runs every
 *       {@code fhirso.bulk.maintenance-millis} (HAPI's default is a minute) and fast tracking lets a
 *       small job skip the wait altogether;</li>
 *   <li>a poll of a running job says {@code Retry-After: fhirso.bulk.retry-after-seconds} instead
 *       of HAPI's fixed 120 s;</li>
 *   <li>a new kick-off never reuses the files of an earlier identical one (HAPI's default within
 *       the retention period), so an export after a write sees that write.</li>
 * </ul>
 */
@Configuration
public class BulkExportConfig {

	static final String POLL_STATUS = "$export-poll-status";

	public BulkExportConfig(
			RestfulServer restfulServer,
			BulkDataExportProvider bulkDataExportProvider,
			JpaStorageSettings storageSettings,
			IJobMaintenanceService maintenance,
			@Value("${fhirso.bulk.maintenance-millis:1000}") long maintenanceMillis,
			@Value("${fhirso.bulk.retention-hours:2}") int retentionHours) {
		restfulServer.registerProvider(bulkDataExportProvider);
		storageSettings.setEnableBulkExportJobReuse(false);
		storageSettings.setJobFastTrackingEnabled(true);
		storageSettings.setBulkExportFileRetentionPeriodHours(retentionHours);
		// Read when the scheduler registers the maintenance job, after every bean is built.
		if (maintenance instanceof JobMaintenanceServiceImpl impl) {
			impl.setScheduledJobFrequencyMillis(maintenanceMillis);
		}
	}

	@Bean
	public FilterRegistrationBean<Filter> bulkExportRetryAfter(
			@Value("${fhirso.bulk.retry-after-seconds:1}") int retryAfterSeconds) {
		FilterRegistrationBean<Filter> registration =
				new FilterRegistrationBean<>(new RetryAfterFilter(Integer.toString(retryAfterSeconds)));
		registration.addUrlPatterns("/fhir/*");
		return registration;
	}

	/** Replaces the Retry-After of a poll-status answer with the configured hint. */
	static final class RetryAfterFilter implements Filter {
		private final String seconds;

		RetryAfterFilter(String seconds) {
			this.seconds = seconds;
		}

		@Override
		public void doFilter(ServletRequest request, ServletResponse response, FilterChain chain)
				throws IOException, ServletException {
			if (request instanceof HttpServletRequest http
					&& response instanceof HttpServletResponse answer
					&& http.getRequestURI().endsWith(POLL_STATUS)) {
				chain.doFilter(request, new HttpServletResponseWrapper(answer) {
					@Override
					public void addHeader(String name, String value) {
						super.addHeader(name, "Retry-After".equalsIgnoreCase(name) ? seconds : value);
					}

					@Override
					public void setHeader(String name, String value) {
						super.setHeader(name, "Retry-After".equalsIgnoreCase(name) ? seconds : value);
					}
				});
				return;
			}
			chain.doFilter(request, response);
		}
	}
}
