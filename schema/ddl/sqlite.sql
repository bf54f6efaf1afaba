-- gen database schema for sqlite, generated from db/models.py.
-- Do not edit: regenerate with `python -m db.ddl --write`.
-- Databases made by gen also hold Alembic's alembic_version table (the schema revision).

CREATE TABLE datasets (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	name VARCHAR NOT NULL,
	folder VARCHAR NOT NULL,
	fingerprint VARCHAR(64) NOT NULL,
	classes JSON,
	created_at DATETIME NOT NULL,
	CONSTRAINT uq_datasets_name UNIQUE (name)
);

CREATE TABLE gan_architectures (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	generator JSON NOT NULL,
	discriminator JSON NOT NULL,
	preset VARCHAR,
	created_at DATETIME NOT NULL,
	name VARCHAR,
	retrained_from INTEGER,
	CONSTRAINT uq_gan_architectures_name UNIQUE (name),
	CONSTRAINT fk_gan_architectures_retrained_from_gan_architectures FOREIGN KEY(retrained_from) REFERENCES gan_architectures (id)
);

CREATE TABLE searches (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	stage VARCHAR NOT NULL,
	dataset_path VARCHAR NOT NULL,
	dataset_fingerprint VARCHAR(64) NOT NULL,
	settings JSON NOT NULL,
	seed INTEGER NOT NULL,
	status VARCHAR NOT NULL,
	created_at DATETIME NOT NULL
);

CREATE TABLE checkpoints (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	gan INTEGER NOT NULL,
	path VARCHAR NOT NULL,
	iteration INTEGER NOT NULL,
	sha256 CHAR(64) NOT NULL,
	created_at DATETIME NOT NULL,
	domain_fid DOUBLE,
	CONSTRAINT fk_checkpoints_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id)
);

CREATE INDEX ix_checkpoints_gan_iteration ON checkpoints (gan, iteration);

CREATE TABLE class_names (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	name VARCHAR NOT NULL,
	gan INTEGER NOT NULL,
	label INTEGER NOT NULL,
	CONSTRAINT uq_class_names_gan_label UNIQUE (gan, label),
	CONSTRAINT uq_class_names_gan_name UNIQUE (gan, name),
	CONSTRAINT fk_class_names_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id)
);

CREATE TABLE classifiers (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	dataset_fingerprint VARCHAR(64) NOT NULL,
	path VARCHAR NOT NULL,
	sha256 CHAR(64) NOT NULL,
	architecture JSON NOT NULL,
	accuracy DOUBLE NOT NULL,
	created_at DATETIME NOT NULL,
	dataset INTEGER,
	name VARCHAR,
	settings JSON,
	history JSON,
	per_class_f1 JSON,
	confusion_matrix JSON,
	CONSTRAINT fk_classifiers_dataset_datasets FOREIGN KEY(dataset) REFERENCES datasets (id),
	CONSTRAINT uq_classifiers_name UNIQUE (name)
);

CREATE INDEX ix_classifiers_dataset_fingerprint ON classifiers (dataset_fingerprint);

CREATE TABLE jobs (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	command VARCHAR NOT NULL,
	arguments JSON NOT NULL,
	cwd VARCHAR,
	status VARCHAR NOT NULL,
	cancel_requested BOOLEAN NOT NULL,
	worker VARCHAR,
	host VARCHAR,
	pid INTEGER,
	heartbeat_at DATETIME,
	log_path VARCHAR,
	attempts INTEGER NOT NULL,
	exit_code INTEGER,
	gan INTEGER,
	created_at DATETIME NOT NULL,
	started_at DATETIME,
	finished_at DATETIME,
	CONSTRAINT fk_jobs_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id)
);

CREATE INDEX ix_jobs_status ON jobs (status);

CREATE TABLE training_parameters (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	g_optimizer VARCHAR NOT NULL,
	d_optimizer VARCHAR NOT NULL,
	loss VARCHAR NOT NULL,
	batch_size INTEGER NOT NULL,
	epochs INTEGER,
	g_lr DOUBLE NOT NULL,
	d_lr DOUBLE NOT NULL,
	gan INTEGER NOT NULL,
	betas JSON,
	ema_decay DOUBLE,
	diffaugment VARCHAR,
	iterations INTEGER NOT NULL,
	dataset_path VARCHAR,
	dataset_fingerprint VARCHAR(64),
	dataset INTEGER,
	device VARCHAR,
	seed INTEGER,
	settings JSON,
	created_at DATETIME NOT NULL,
	CONSTRAINT uq_training_parameters_gan UNIQUE (gan),
	CONSTRAINT fk_training_parameters_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id),
	CONSTRAINT fk_training_parameters_dataset_datasets FOREIGN KEY(dataset) REFERENCES datasets (id)
);

CREATE TABLE curations (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	gan INTEGER NOT NULL,
	checkpoint INTEGER NOT NULL,
	seed INTEGER NOT NULL,
	settings JSON NOT NULL,
	classes JSON,
	seconds DOUBLE,
	created_at DATETIME NOT NULL,
	CONSTRAINT fk_curations_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id),
	CONSTRAINT fk_curations_checkpoint_checkpoints FOREIGN KEY(checkpoint) REFERENCES checkpoints (id)
);

CREATE TABLE reports (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	gan INTEGER NOT NULL,
	metric VARCHAR NOT NULL,
	class_name INTEGER,
	value DOUBLE NOT NULL,
	settings JSON,
	created_at DATETIME NOT NULL,
	CONSTRAINT fk_reports_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id),
	CONSTRAINT fk_reports_class_name_class_names FOREIGN KEY(class_name) REFERENCES class_names (id)
);

CREATE INDEX ix_reports_gan_metric ON reports (gan, metric);

CREATE TABLE search_candidates (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	search INTEGER NOT NULL,
	architecture INTEGER,
	classifier INTEGER,
	parent INTEGER,
	step INTEGER NOT NULL,
	fitness DOUBLE,
	budget JSON NOT NULL,
	seconds DOUBLE NOT NULL,
	worker VARCHAR,
	status VARCHAR NOT NULL,
	created_at DATETIME NOT NULL,
	CONSTRAINT uq_search_candidates_search_step UNIQUE (search, step),
	CONSTRAINT fk_search_candidates_search_searches FOREIGN KEY(search) REFERENCES searches (id),
	CONSTRAINT fk_search_candidates_architecture_gan_architectures FOREIGN KEY(architecture) REFERENCES gan_architectures (id),
	CONSTRAINT fk_search_candidates_classifier_classifiers FOREIGN KEY(classifier) REFERENCES classifiers (id),
	CONSTRAINT fk_search_candidates_parent_search_candidates FOREIGN KEY(parent) REFERENCES search_candidates (id)
);

CREATE TABLE images (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	file_path VARCHAR NOT NULL,
	class_name INTEGER NOT NULL,
	md5 CHAR(32) NOT NULL,
	width INTEGER NOT NULL,
	height INTEGER NOT NULL,
	seed INTEGER NOT NULL,
	sample_index INTEGER NOT NULL,
	checkpoint INTEGER NOT NULL,
	iteration INTEGER NOT NULL,
	created_at DATETIME NOT NULL,
	batch_size INTEGER,
	threads INTEGER,
	device VARCHAR,
	torch_version VARCHAR,
	class_confidence DOUBLE,
	realism DOUBLE,
	near_copy_distance DOUBLE,
	curation INTEGER,
	CONSTRAINT uq_images_checkpoint_class_name_seed_sample_index_file_path UNIQUE (checkpoint, class_name, seed, sample_index, file_path),
	CONSTRAINT fk_images_class_name_class_names FOREIGN KEY(class_name) REFERENCES class_names (id),
	CONSTRAINT fk_images_checkpoint_checkpoints FOREIGN KEY(checkpoint) REFERENCES checkpoints (id),
	CONSTRAINT fk_images_curation_curations FOREIGN KEY(curation) REFERENCES curations (id)
);

CREATE INDEX ix_images_class_name ON images (class_name);
