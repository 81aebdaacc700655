package org.fhirso.server;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.narrative.DefaultThymeleafNarrativeGenerator;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.interceptor.ResponseHighlighterInterceptor;
import org.springframework.beans.factory.config.BeanPostProcessor;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.core.env.Environment;

/**
 * What the server profile changes outside the storage settings: page sizes, narrative generation,
 * pretty printing and the HTML view for browsers.
 *
 * <p>The beans are HAPI's own (its paging provider, its FhirContext) or {@link FhirServletConfig}'s
 * RestfulServer; they are adjusted after they are made instead of being redefined, so this class
 * is the only place that knows about profiles. The values are {@code fhirso.*} properties:
 * {@code application.properties} (tuned) and {@code application-public.properties} (HAPI's JPA
 * starter, as on HAPI's public test server).
 */
@Configuration
public class ServerProfileConfig {

	/** Static: a BeanPostProcessor must exist before the beans it adjusts. */
	@Bean
	public static BeanPostProcessor serverProfileAdjuster(Environment environment) {
		return new BeanPostProcessor() {
			@Override
			public Object postProcessAfterInitialization(Object bean, String beanName) {
				if (bean instanceof DatabaseBackedPagingProvider paging) {
					Integer defaultSize = environment.getProperty("fhirso.paging.default-size", Integer.class);
					Integer maxSize = environment.getProperty("fhirso.paging.max-size", Integer.class);
					// unset: HAPI's library defaults (10 per page, at most 50), today's tuned server
					if (maxSize != null) {
						paging.setMaximumPageSize(maxSize);
					}
					if (defaultSize != null) {
						paging.setDefaultPageSize(defaultSize);
					}
				} else if (bean instanceof FhirContext context
						&& environment.getProperty("fhirso.narrative", Boolean.class, false)) {
					// The starter's narrative_enabled: a generated text.div on resources stored without one.
					context.setNarrativeGenerator(new DefaultThymeleafNarrativeGenerator());
				} else if (bean instanceof RestfulServer server) {
					// CapabilityStatement.implementation.description: clients and the live tests see which profile answers.
					server.setImplementationDescription("fhir-so local HAPI FHIR server, profile "
							+ environment.getProperty("fhirso.profile", "tuned")
							+ ", database " + environment.getProperty("fhirso.db.kind", "h2"));
					server.setDefaultPrettyPrint(environment.getProperty("fhirso.pretty-print", Boolean.class, false));
					if (environment.getProperty("fhirso.html-view", Boolean.class, false)) {
						server.registerInterceptor(new ResponseHighlighterInterceptor());
					}
				}
				return bean;
			}
		};
	}
}
