package org.fhirso.server;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.config.HapiJpaConfig;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchClientAutoConfiguration;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchRestClientAutoConfiguration;
import org.springframework.boot.autoconfigure.jdbc.DataSourceAutoConfiguration;
import org.springframework.boot.autoconfigure.orm.jpa.HibernateJpaAutoConfiguration;
import org.springframework.boot.autoconfigure.quartz.QuartzAutoConfiguration;
import org.springframework.boot.autoconfigure.thymeleaf.ThymeleafAutoConfiguration;
import org.springframework.context.annotation.Import;

/**
 * The local HAPI FHIR R4 JPA server of fhir-so.
 *
 * <p>HAPI's own Spring configurations provide the DAOs, the resource providers, the validation
 * chain (which includes the StructureDefinitions, ValueSets and CodeSystems stored on this
 * server) and the batch framework; {@link StorageConfig} adds the database and the storage
 * settings, {@link FhirServletConfig} mounts the REST server at {@code /fhir/*}.
 *
 * <p>Run: {@code java -Xmx1g -jar fhir-so-server.jar --server.port=8090 --fhirso.data=DIR}
 */
@SpringBootApplication(
		exclude = {
			// HAPI builds its own EntityManagerFactory and DataSource (StorageConfig) ...
			DataSourceAutoConfiguration.class,
			HibernateJpaAutoConfiguration.class,
			// ... and needs neither a Quartz scheduler nor Thymeleaf views from Spring Boot.
			QuartzAutoConfiguration.class,
			ThymeleafAutoConfiguration.class,
			// Hibernate Search is off: no Elasticsearch client (its sniffer would poll localhost:9200).
			ElasticsearchClientAutoConfiguration.class,
			ElasticsearchRestClientAutoConfiguration.class
		})
@Import({
	JpaR4Config.class,
	HapiJpaConfig.class,
	ThreadPoolFactoryConfig.class,
	JpaBatch2Config.class,
	Batch2JobsConfig.class,
	// the in-memory message broker the batch framework (reindex, $expunge, bulk export) runs on
	SubscriptionChannelConfig.class
})
public class Application {

	public static void main(String[] args) {
		SpringApplication.run(Application.class, args);
	}
}
