-- gen database schema for postgresql, generated from db/models.py.
-- Do not edit: regenerate with `python -m db.ddl --write`.
-- Databases made by gen also hold Alembic's alembic_version table (the schema revision).

CREATE TABLE datasets (
	id SERIAL NOT NULL,
	name VARCHAR NOT NULL,
	folder VARCHAR NOT NULL,
	fingerprint VARCHAR(64) NOT NULL,
	classes JSONB,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	CONSTRAINT pk_datasets PRIMARY KEY (id),
	CONSTRAINT uq_datasets_name UNIQUE (name)
);

CREATE TABLE gan_architectures (
	id SERIAL NOT NULL,
	generator JSONB NOT NULL,
	discriminator JSONB NOT NULL,
	preset VARCHAR,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	name VARCHAR,
	retrained_from INTEGER,
	CONSTRAINT pk_gan_architectures PRIMARY KEY (id),
	CONSTRAINT uq_gan_architectures_name UNIQUE (name),
	CONSTRAINT fk_gan_architectures_retrained_from_gan_architectures FOREIGN KEY(retrained_from) REFERENCES gan_architectures (id)
);

CREATE TABLE searches (
	id SERIAL NOT NULL,
	stage VARCHAR NOT NULL,
	dataset_path VARCHAR NOT NULL,
	dataset_fingerprint VARCHAR(64) NOT NULL,
	settings JSONB NOT NULL,
	seed INTEGER NOT NULL,
	status VARCHAR NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	CONSTRAINT pk_searches PRIMARY KEY (id)
);

CREATE TABLE checkpoints (
	id SERIAL NOT NULL,
	gan INTEGER NOT NULL,
	path VARCHAR NOT NULL,
	iteration INTEGER NOT NULL,
	sha256 CHAR(64) NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	domain_fid DOUBLE PRECISION,
	CONSTRAINT pk_checkpoints PRIMARY KEY (id),
	CONSTRAINT fk_checkpoints_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id)
);

CREATE INDEX ix_checkpoints_gan_iteration ON checkpoints (gan, iteration);

CREATE TABLE class_names (
	id SERIAL NOT NULL,
	name VARCHAR NOT NULL,
	gan INTEGER NOT NULL,
	label INTEGER NOT NULL,
	CONSTRAINT pk_class_names PRIMARY KEY (id),
	CONSTRAINT uq_class_names_gan_label UNIQUE (gan, label),
	CONSTRAINT uq_class_names_gan_name UNIQUE (gan, name),
	CONSTRAINT fk_class_names_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id)
);

CREATE TABLE classifiers (
	id SERIAL NOT NULL,
	dataset_fingerprint VARCHAR(64) NOT NULL,
	path VARCHAR NOT NULL,
	sha256 CHAR(64) NOT NULL,
	architecture JSONB NOT NULL,
	accuracy DOUBLE PRECISION NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	dataset INTEGER,
	name VARCHAR,
	settings JSONB,
	history JSONB,
	per_class_f1 JSONB,
	confusion_matrix JSONB,
	CONSTRAINT pk_classifiers PRIMARY KEY (id),
	CONSTRAINT fk_classifiers_dataset_datasets FOREIGN KEY(dataset) REFERENCES datasets (id),
	CONSTRAINT uq_classifiers_name UNIQUE (name)
);

CREATE INDEX ix_classifiers_dataset_fingerprint ON classifiers (dataset_fingerprint);

CREATE TABLE jobs (
	id SERIAL NOT NULL,
	command VARCHAR NOT NULL,
	arguments JSONB NOT NULL,
	cwd VARCHAR,
	status VARCHAR NOT NULL,
	cancel_requested BOOLEAN NOT NULL,
	worker VARCHAR,
	host VARCHAR,
	pid INTEGER,
	heartbeat_at TIMESTAMP WITH TIME ZONE,
	log_path VARCHAR,
	attempts INTEGER NOT NULL,
	exit_code INTEGER,
	gan INTEGER,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	started_at TIMESTAMP WITH TIME ZONE,
	finished_at TIMESTAMP WITH TIME ZONE,
	CONSTRAINT pk_jobs PRIMARY KEY (id),
	CONSTRAINT fk_jobs_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id)
);

CREATE INDEX ix_jobs_status ON jobs (status);

CREATE TABLE training_parameters (
	id SERIAL NOT NULL,
	g_optimizer VARCHAR NOT NULL,
	d_optimizer VARCHAR NOT NULL,
	loss VARCHAR NOT NULL,
	batch_size INTEGER NOT NULL,
	epochs INTEGER,
	g_lr DOUBLE PRECISION NOT NULL,
	d_lr DOUBLE PRECISION NOT NULL,
	gan INTEGER NOT NULL,
	betas JSONB,
	ema_decay DOUBLE PRECISION,
	diffaugment VARCHAR,
	iterations INTEGER NOT NULL,
	dataset_path VARCHAR,
	dataset_fingerprint VARCHAR(64),
	dataset INTEGER,
	device VARCHAR,
	seed INTEGER,
	settings JSONB,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	CONSTRAINT pk_training_parameters PRIMARY KEY (id),
	CONSTRAINT uq_training_parameters_gan UNIQUE (gan),
	CONSTRAINT fk_training_parameters_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id),
	CONSTRAINT fk_training_parameters_dataset_datasets FOREIGN KEY(dataset) REFERENCES datasets (id)
);

CREATE TABLE curations (
	id SERIAL NOT NULL,
	gan INTEGER NOT NULL,
	checkpoint INTEGER NOT NULL,
	seed INTEGER NOT NULL,
	settings JSONB NOT NULL,
	classes JSONB,
	seconds DOUBLE PRECISION,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	CONSTRAINT pk_curations PRIMARY KEY (id),
	CONSTRAINT fk_curations_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id),
	CONSTRAINT fk_curations_checkpoint_checkpoints FOREIGN KEY(checkpoint) REFERENCES checkpoints (id)
);

CREATE TABLE reports (
	id SERIAL NOT NULL,
	gan INTEGER NOT NULL,
	metric VARCHAR NOT NULL,
	class_name INTEGER,
	value DOUBLE PRECISION NOT NULL,
	settings JSONB,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	CONSTRAINT pk_reports PRIMARY KEY (id),
	CONSTRAINT fk_reports_gan_gan_architectures FOREIGN KEY(gan) REFERENCES gan_architectures (id),
	CONSTRAINT fk_reports_class_name_class_names FOREIGN KEY(class_name) REFERENCES class_names (id)
);

CREATE INDEX ix_reports_gan_metric ON reports (gan, metric);

CREATE TABLE search_candidates (
	id SERIAL NOT NULL,
	search INTEGER NOT NULL,
	architecture INTEGER,
	classifier INTEGER,
	parent INTEGER,
	step INTEGER NOT NULL,
	fitness DOUBLE PRECISION,
	budget JSONB NOT NULL,
	seconds DOUBLE PRECISION NOT NULL,
	worker VARCHAR,
	status VARCHAR NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	CONSTRAINT pk_search_candidates PRIMARY KEY (id),
	CONSTRAINT uq_search_candidates_search_step UNIQUE (search, step),
	CONSTRAINT fk_search_candidates_search_searches FOREIGN KEY(search) REFERENCES searches (id),
	CONSTRAINT fk_search_candidates_architecture_gan_architectures FOREIGN KEY(architecture) REFERENCES gan_architectures (id),
	CONSTRAINT fk_search_candidates_classifier_classifiers FOREIGN KEY(classifier) REFERENCES classifiers (id),
	CONSTRAINT fk_search_candidates_parent_search_candidates FOREIGN KEY(parent) REFERENCES search_candidates (id)
);

CREATE TABLE images (
	id SERIAL NOT NULL,
	file_path VARCHAR NOT NULL,
	class_name INTEGER NOT NULL,
	md5 CHAR(32) NOT NULL,
	width INTEGER NOT NULL,
	height INTEGER NOT NULL,
	seed INTEGER NOT NULL,
	sample_index INTEGER NOT NULL,
	checkpoint INTEGER NOT NULL,
	iteration INTEGER NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	batch_size INTEGER,
	threads INTEGER,
	device VARCHAR,
	torch_version VARCHAR,
	class_confidence DOUBLE PRECISION,
	realism DOUBLE PRECISION,
	near_copy_distance DOUBLE PRECISION,
	curation INTEGER,
	CONSTRAINT pk_images PRIMARY KEY (id),
	CONSTRAINT uq_images_checkpoint_class_name_seed_sample_index_file_path UNIQUE (checkpoint, class_name, seed, sample_index, file_path),
	CONSTRAINT fk_images_class_name_class_names FOREIGN KEY(class_name) REFERENCES class_names (id),
	CONSTRAINT fk_images_checkpoint_checkpoints FOREIGN KEY(checkpoint) REFERENCES checkpoints (id),
	CONSTRAINT fk_images_curation_curations FOREIGN KEY(curation) REFERENCES curations (id)
);

CREATE INDEX ix_images_class_name ON images (class_name);
