package org.fhirso.server;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirPostgresDialect;
import com.zaxxer.hikari.HikariDataSource;
import jakarta.persistence.EntityManagerFactory;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import javax.sql.DataSource;
import org.hibernate.boot.model.naming.CamelCaseToUnderscoresNamingStrategy;
import org.hibernate.cfg.AvailableSettings;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.boot.orm.jpa.hibernate.SpringImplicitNamingStrategy;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;

/**
 * The database (H2 on disk under {@code fhirso.data}, or PostgreSQL) and the JPA storage settings of the profile.
 *
 * <p>Every value that differs between the profiles is a {@code fhirso.*} property:
 * {@code application.properties} holds the tuned profile, {@code application-public.properties}
 * the defaults of HAPI's JPA starter (the public test server's configuration).
 */
@Configuration
public class StorageConfig {

	@Value("${fhirso.db.kind:h2}")
	private String databaseKind;

	@Bean
	public DataSource dataSource(
			@Value("${fhirso.data}") String dataDir,
			@Value("${fhirso.db.url:}") String url,
			@Value("${fhirso.db.user:}") String user,
			// Passed in the environment (FHIRSO_DB_PASSWORD), never on the command line, where ps shows it.
			@Value("${fhirso.db.password:}") String password) {
		HikariDataSource dataSource = new HikariDataSource();
		if (isPostgres()) {
			if (url.isBlank()) {
				throw new IllegalStateException("fhirso.db.kind=postgres needs fhirso.db.url");
			}
			dataSource.setDriverClassName("org.postgresql.Driver");
			dataSource.setJdbcUrl(url);
			dataSource.setUsername(user);
			dataSource.setPassword(password);
		} else {
			dataSource.setDriverClassName("org.h2.Driver");
			// H2 locks the database file, so two servers can never share one data folder.
			dataSource.setJdbcUrl("jdbc:h2:file:" + Path.of(dataDir, "h2", "fhir").toAbsolutePath());
			dataSource.setUsername("sa");
			dataSource.setPassword("");
		}
		dataSource.setMaximumPoolSize(10);
		return dataSource;
	}

	private boolean isPostgres() {
		return switch (databaseKind) {
			case "postgres" -> true;
			case "h2" -> false;
			default -> throw new IllegalStateException("fhirso.db.kind must be h2 or postgres, not " + databaseKind);
		};
	}

	@Bean
	public JpaStorageSettings storageSettings(
			// empty: off (the tuned profile: a search must see the writes made just before it)
			@Value("${fhirso.search.reuse-cached-results-millis:}") String reuseMillis,
			@Value("${fhirso.search.prefetch-thresholds:}") List<Integer> prefetchThresholds,
			@Value("${fhirso.search.filter-enabled:false}") boolean filterEnabled,
			// empty: HAPI's default (no limit); the public profile caps it at its maximum page size, as the starter does
			@Value("${fhirso.search.fetch-size-max:}") String fetchSizeMax,
			@Value("${fhirso.references.allow-external:true}") boolean allowExternalReferences,
			@Value("${fhirso.references.logical-urls:}") List<String> logicalUrls,
			@Value("${fhirso.references.integrity-on-write:true}") boolean integrityOnWrite,
			@Value("${fhirso.references.integrity-on-delete:true}") boolean integrityOnDelete) {
		JpaStorageSettings settings = new JpaStorageSettings();
		settings.setReuseCachedSearchResultsForMillis(reuseMillis.isBlank() ? null : Long.valueOf(reuseMillis.trim()));
		if (!prefetchThresholds.isEmpty()) {
			settings.setSearchPreFetchThresholds(prefetchThresholds);
		}
		settings.setFilterParameterEnabled(filterEnabled);
		if (!fetchSizeMax.isBlank()) {
			settings.setFetchSizeDefaultMaximum(Integer.valueOf(fetchSizeMax.trim()));
		}
		// Client-assigned ids such as "case-42" are allowed; purely numeric ones stay server-side.
		settings.setResourceClientIdStrategy(JpaStorageSettings.ClientIdStrategyEnum.ALPHANUMERIC);
		settings.setEnforceReferentialIntegrityOnWrite(integrityOnWrite);
		settings.setEnforceReferentialIntegrityOnDelete(integrityOnDelete);
		settings.setAllowExternalReferences(allowExternalReferences);
		if (!logicalUrls.isEmpty()) {
			settings.setTreatReferencesAsLogical(new LinkedHashSet<>(logicalUrls));
		}
		settings.setHibernateSearchIndexFullText(false);
		settings.setHibernateSearchIndexSearchParams(false);
		return settings;
	}

	@Bean
	public PartitionSettings partitionSettings() {
		return new PartitionSettings();
	}

	@Primary
	@Bean
	public LocalContainerEntityManagerFactoryBean entityManagerFactory(
			ConfigurableListableBeanFactory beanFactory,
			FhirContext fhirContext,
			JpaStorageSettings storageSettings,
			DataSource dataSource) {
		LocalContainerEntityManagerFactoryBean factory =
				HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
		factory.setPersistenceUnitName("HAPI_PU");
		factory.setDataSource(dataSource);
		Map<String, Object> jpa = new HashMap<>();
		jpa.put(AvailableSettings.DIALECT,
				(isPostgres() ? HapiFhirPostgresDialect.class : HapiFhirH2Dialect.class).getName());
		jpa.put(AvailableSettings.HBM2DDL_AUTO, "update");
		jpa.put(AvailableSettings.IMPLICIT_NAMING_STRATEGY, SpringImplicitNamingStrategy.class.getName());
		jpa.put(AvailableSettings.PHYSICAL_NAMING_STRATEGY, CamelCaseToUnderscoresNamingStrategy.class.getName());
		jpa.put(AvailableSettings.SCANNER, "org.hibernate.boot.archive.scan.internal.DisabledScanner");
		jpa.put(AvailableSettings.STATEMENT_BATCH_SIZE, "20");
		jpa.put(AvailableSettings.USE_SECOND_LEVEL_CACHE, "false");
		jpa.put(AvailableSettings.USE_QUERY_CACHE, "false");
		jpa.put("hibernate.search.enabled", "false");
		factory.setJpaPropertyMap(jpa);
		return factory;
	}

	@Primary
	@Bean
	public JpaTransactionManager transactionManager(EntityManagerFactory entityManagerFactory) {
		return new JpaTransactionManager(entityManagerFactory);
	}
}
